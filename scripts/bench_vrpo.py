"""VRPO on Countdown: the loss estimate's variance under each of LLaDA 1.5's reductions, and what
preference optimisation does to the model.

    python scripts/bench_vrpo.py [--start-steps 3000] [--vrpo-steps 150] [--queries 1500]
                                 [--repeats 64] [--seeds 0 1 2] [--runs DIR] [--reuse]

1. A start: `experiment=countdown` for `--start-steps` steps (room to improve on held-out problems).
2. Preference pairs from its own samples on the TRAINING problems (chosen: a sample that hits the
   target, else the reference answer; rejected: a wrong sample; `llada.preference_builder`); the
   last `--held-out` pairs are kept apart, never trained on.
3. Per seed of `--seeds`, VRPO from the start for `--vrpo-steps` steps (`objective=vrpo`, its
   defaults: budget 8 as 8 timesteps x 1 mask, antithetic, beta 0.1) on the other pairs.
4. With each seed's VRPO model as the policy and the start as the reference, the DPO loss on the
   held-out pairs is estimated `--repeats` times per setting (budget, allocation, antithetic): its standard
   deviation across repeats, and the variance ratio to the plainest estimator (budget 1,
   independent draws for policy and reference).
5. Preference accuracy on the held-out pairs (the policy's DPO margin > 0; and, for the start and
   the VRPO model alike, the share of pairs whose chosen answer has the higher ELBO), estimated with
   a budget of 64; Countdown accuracy on held-out problems (greedy) before and after.
Every figure of steps 4-5 is reported as mean +- sd (min-max) over the VRPO seeds. Writes
scripts/results/bench_vrpo.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from runs import REPO, ensure_trained, spread, task_options, train_logged

# name -> (n_times, masks_per_time, antithetic): the budget, its allocation, shared draws.
SETTINGS = {
    "budget 1, independent": (1, 1, False),
    "budget 1, antithetic": (1, 1, True),
    "budget 8 = 1 timestep x 8 masks, antithetic": (1, 8, True),
    "budget 8 = 8 timesteps x 1 mask, independent": (8, 1, False),
    "budget 8 = 8 timesteps x 1 mask, antithetic": (8, 1, True),
    "budget 32 = 32 timesteps x 1 mask, antithetic": (32, 1, True),
}
BASELINE = "budget 1, independent"
SCORING_BUDGET = 64


def pairs_batch(model: Any, path: Path) -> dict[str, Any]:
    """The pairs of a jsonl file encoded as `data=preferences` encodes them, as one batch."""
    from llada.data.preferences import PreferenceDataModule
    from llada.data.rows import collate_rows

    data = PreferenceDataModule(path=str(path))
    data.prepare_tokenizer(model.tokenizer)
    return collate_rows(data.encode(data.examples(), model.tokenizer))


def loss_spread(policy: Any, reference: Any, batch: dict[str, Any], repeats: int) -> dict:
    """Per setting, `repeats` estimates of the DPO loss on `batch` and of each pair's score
    s = beta (dB_w - dB_l): the loss's mean and sd, the score's sd (the mean over pairs of each
    pair's sd: what LLaDA 1.5's bounds on the loss and gradient variance are in terms of), and
    both variance ratios to the plainest estimator."""
    import torch

    from llada.diffusion.policy_logprob import ELBOLogProbs
    from llada.diffusion.vrpo import VRPO

    out: dict[str, dict[str, float]] = {}
    for name, (n_times, masks, antithetic) in SETTINGS.items():
        objective = VRPO(
            mask_id=policy.mask_id, estimator=ELBOLogProbs(n_times, masks), antithetic=antithetic,
            reference=reference.backbone,
        )  # fmt: skip
        torch.manual_seed(0)
        losses, scores = [], []
        with torch.no_grad():
            for _ in range(repeats):
                loss, margins = objective.preference_loss(policy.backbone, batch)  # (), (B,)
                losses.append(float(loss))
                scores.append(margins)
        per_pair_sd = torch.stack(scores).std(dim=0)  # (B,)
        out[name] = {"mean": statistics.fmean(losses), "sd": statistics.stdev(losses),
                     "score_sd": float(per_pair_sd.mean())}  # fmt: skip
        print(f"  {name}: loss {out[name]['mean']:.4f} +- {out[name]['sd']:.4f}, score sd "
              f"{out[name]['score_sd']:.3f}", flush=True)  # fmt: skip
    base, base_score = out[BASELINE]["sd"] ** 2, out[BASELINE]["score_sd"] ** 2
    for values in out.values():
        values["variance_reduction"] = base / max(values["sd"] ** 2, 1e-30)
        values["score_variance_reduction"] = base_score / max(values["score_sd"] ** 2, 1e-30)
    return out


def preference_scores(policy: Any, reference: Any, batch: dict[str, Any]) -> dict[str, float]:
    """Share of pairs with a positive DPO margin, and with chosen's ELBO above rejected's."""
    import torch

    from llada.diffusion.policy_logprob import ELBOLogProbs
    from llada.diffusion.vrpo import VRPO

    objective = VRPO(
        mask_id=policy.mask_id, estimator=ELBOLogProbs(SCORING_BUDGET), reference=reference.backbone
    )
    torch.manual_seed(1)
    with torch.no_grad():
        bounds = objective.bounds(policy.backbone, batch)  # (B,) each
    margin = (bounds["policy_chosen"] - bounds["reference_chosen"]) - (
        bounds["policy_rejected"] - bounds["reference_rejected"]
    )
    return {
        "dpo_margin_positive": float((margin > 0).float().mean()),
        "policy_prefers_chosen": float(
            (bounds["policy_chosen"] > bounds["policy_rejected"]).float().mean()
        ),
        "start_prefers_chosen": float(
            (bounds["reference_chosen"] > bounds["reference_rejected"]).float().mean()
        ),
    }


def countdown_accuracy(model: Any, options: dict[str, Any]) -> dict[str, float]:
    """Held-out Countdown accuracy; `options` are the start's task options (a VRPO checkpoint's
    data config is its preference file)."""
    from llada.tasks import task_accuracy

    return task_accuracy(model, "countdown", **options)["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-steps", type=int, default=3000)
    parser.add_argument("--vrpo-steps", type=int, default=150)
    parser.add_argument("--queries", type=int, default=1500, help="training problems sampled")
    parser.add_argument("--held-out", type=int, default=64, help="pairs never trained on")
    parser.add_argument("--repeats", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="VRPO seeds")
    parser.add_argument("--runs", type=Path, default=REPO / "outputs" / "bench_vrpo")
    parser.add_argument("--reuse", action="store_true", help="read finished runs, train none")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from llada.machine import describe, summary
    from llada.preference_builder import preferences_from_samples, write_jsonl
    from llada.text_model import load_text_model

    print(f"machine: {summary()}", flush=True)
    start_ckpt = args.runs / "start" / "checkpoints" / "last.ckpt"
    if not (args.reuse or start_ckpt.is_file()):
        steps = args.start_steps
        print(f"[start] experiment=countdown, {steps} steps", flush=True)
        train_logged(args.runs / "start", ["experiment=countdown", f"trainer.max_steps={steps}",
                                    f"trainer.val_check_interval={steps}", "seed=0",
                                    "callbacks.task=null"])  # fmt: skip
    start = load_text_model(start_ckpt)
    train_file, held_file = args.runs / "train_pairs.jsonl", args.runs / "held_out_pairs.jsonl"
    if not (args.reuse or held_file.is_file()):
        print(f"[pairs] sampling 4 answers for {args.queries} training problems", flush=True)
        options = task_options(start.data_config)
        rows = preferences_from_samples(start, "countdown", limit=args.queries, **options)
        write_jsonl(rows[: -args.held_out], train_file)
        write_jsonl(rows[-args.held_out :], held_file)
    n_train = len(train_file.read_text().splitlines())
    batch = pairs_batch(start, held_file)
    options = task_options(start.data_config)
    print("[countdown] held-out accuracy of the start", flush=True)
    results: dict[str, Any] = {
        "pairs": {"train": n_train, "held_out": int(batch["chosen_input_ids"].shape[0])},
        "countdown_start": countdown_accuracy(start, options),
        "runs": [],
    }
    for seed in args.seeds:
        run_dir = args.runs / f"vrpo_seed{seed}"
        if not args.reuse:
            ensure_trained(run_dir, ["objective=vrpo", "data=preferences", f"data.path={train_file}",
                                     f"model.init_from={start_ckpt}", f"seed={seed}",
                                     f"trainer.max_steps={args.vrpo_steps}",
                                     f"trainer.val_check_interval={args.vrpo_steps}"])  # fmt: skip
        policy = load_text_model(run_dir / "checkpoints" / "last.ckpt")
        print(f"[seed {seed}] variance: {len(SETTINGS)} settings x {args.repeats} estimates; "
              "preference; countdown", flush=True)  # fmt: skip
        results["runs"].append({
            "seed": seed,
            "variance": loss_spread(policy, start, batch, args.repeats),
            "preference": preference_scores(policy, start, batch),
            "countdown": countdown_accuracy(policy, options),
        })  # fmt: skip
    write(results, args, describe(), summary())


def across(runs: list[dict[str, Any]], *keys: str) -> list[float]:
    """One figure of every seed's results, e.g. across(runs, "preference", "dpo_margin_positive")."""
    values = []
    for run in runs:
        for key in keys:
            run = run[key]
        values.append(float(run))
    return values


def write(results: dict[str, Any], args: Any, machine: dict[str, Any], line: str) -> None:
    out = REPO / "scripts" / "results" / "bench_vrpo"
    payload = {"machine": machine, **{k: v for k, v in vars(args).items() if k != "runs"},
               **results}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    pairs, runs, seeds = results["pairs"], results["runs"], " ".join(map(str, args.seeds))
    lines = [
        "# VRPO on Countdown: variance of the loss estimate, preference accuracy "
        "(scripts/bench_vrpo.py)",
        "",
        f"`python scripts/bench_vrpo.py --start-steps {args.start_steps} --vrpo-steps "
        f"{args.vrpo_steps} --queries {args.queries} --repeats {args.repeats} --seeds {seeds}`; "
        f"measured on {line}. Exact values vary by machine.",
        "",
        f"Start: `experiment=countdown`, {args.start_steps} steps. Pairs from its own samples on "
        f"training problems: {pairs['train']} for VRPO ({args.vrpo_steps} steps, budget 8 = 8 "
        f"timesteps x 1 mask, antithetic, beta 0.1; VRPO seeds {seeds}), {pairs['held_out']} "
        f"held out. The DPO loss of each seed's VRPO model (policy) against the start "
        f"(reference) on the held-out pairs, estimated {args.repeats} times per setting; mean "
        "+- sd (min-max) over the VRPO seeds:",
        "",
        "| estimator | loss sd | loss variance reduction | score sd per pair | "
        "score variance reduction |",
        "|---|---|---|---|---|",
    ]
    for name in SETTINGS:
        lines.append(
            f"| {name} | {spread(across(runs, 'variance', name, 'sd'), 4)} | "
            f"{spread(across(runs, 'variance', name, 'variance_reduction'), 1)}x | "
            f"{spread(across(runs, 'variance', name, 'score_sd'), 3)} | "
            f"{spread(across(runs, 'variance', name, 'score_variance_reduction'), 1)}x |"
        )
    lines += [
        "",
        f"Reductions are against the plainest estimator ({BASELINE}), per seed. The score is "
        "s = beta [(B_pi - B_ref)(chosen) - (B_pi - B_ref)(rejected)] of one pair; the loss is "
        "-log sigmoid(s) averaged over the pairs, so where the policy already separates the "
        "pairs well the loss saturates and its spread understates the score's.",
    ]
    start_prefers = across(runs, "preference", "start_prefers_chosen")[0]  # the same start
    countdown = "; ".join(
        f"{kind} {results['countdown_start'][kind]:.3f} -> "
        f"{spread(across(runs, 'countdown', kind), 3)}"
        for kind in results["countdown_start"]
    )
    lines += [
        "",
        f"Held-out pairs (ELBO budget {SCORING_BUDGET}): DPO margin > 0 for "
        f"{spread(across(runs, 'preference', 'dpo_margin_positive'), 3)} of them; chosen's ELBO "
        f"above rejected's for {start_prefers:.3f} under the start and "
        f"{spread(across(runs, 'preference', 'policy_prefers_chosen'), 3)} after VRPO.",
        "",
        f"Countdown, held-out problems (greedy): {countdown} (start -> after VRPO).",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
