"""Several tokens per step where the model is sure: forward passes (NFE) against exact-match accuracy.

    python scripts/bench_parallel_decoding.py [--seeds 0 1 2] [--runs DIR] [--lm CKPT --judge AR_CKPT]

Per training seed, the MDM of `experiment=sudoku` and `experiment=reversal`: the very runs of
`scripts/any_order.py` (same overrides, same directories under --runs; finished ones are reused,
missing ones trained through `llada.train`). Then every held-out query of each task is decoded,
greedy, with:
- one token per step (LLaDA's low-confidence remasking, steps = the answer's tokens): the baseline;
- one token per step in a random order, and largest-margin first (Kim et al. 2025's comparison of
  decoding orders: an adaptive order against a random one);
- the confidence-threshold rule (Fast-dLLM) at tau in {0.9, 0.7, 0.5}: every masked position whose
  top probability is >= tau commits, at least one per step;
- the factor rule (Fast-dLLM): the largest n with (n + 1)(1 - c_n) < f, at least one; f = 1.
Reports per rule the mean over seeds (+- sd, min-max) of the NFE per query and of the accuracy
(exact match of the whole answer), the NFE reduction against one token per step and the accuracy
change, each taken per seed and then summarised (a rule is judged on the model it decodes). With --lm/--judge it also samples 64 tokens after the default prompts from a
language model under the same rules and reports the judge's perplexity. Writes
bench_parallel_decoding.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from any_order import run_dir, run_overrides
from runs import REPO, ensure_trained, spread, task_options

TASKS = {"sudoku": "infill", "reversal": "forward"}  # the task and its headline query kind
RULES: dict[str, dict[str, Any]] = {
    "one token per step": {},  # LLaDA's low-confidence order, the baseline
    "random order": {"remasking": "random"},  # one token per step, in a random order
    "margin order": {"remasking": "margin"},  # one token per step, largest top-2 margin first
    "threshold 0.9": {"remasking": "threshold", "remasking_options": {"threshold": 0.9}},
    "threshold 0.7": {"remasking": "threshold", "remasking_options": {"threshold": 0.7}},
    "threshold 0.5": {"remasking": "threshold", "remasking_options": {"threshold": 0.5}},
    "factor 1.0": {"remasking": "factor", "remasking_options": {"factor": 1.0}},
}
PROMPTS = ["The return statement", "A class definition", "If the object", "The import system"]


def trained_checkpoint(runs: Path, task: str, seed: int) -> Path:
    """The MDM of `experiment=<task>` with this training seed (trained now unless finished)."""
    ensure_trained(run_dir(runs, task, "MDM", seed), run_overrides(task, "MDM", seed, []))
    return run_dir(runs, task, "MDM", seed) / "checkpoints" / "last.ckpt"


def task_rows(ckpt: Path, task: str, seed: int) -> list[dict[str, Any]]:
    """Every rule on every held-out query of the task."""
    from llada.tasks import task_accuracy
    from llada.text_model import load_text_model

    model = load_text_model(ckpt)
    options = task_options(model.data_config)
    rows = []
    for name, settings in RULES.items():
        started = time.perf_counter()
        result = task_accuracy(model, task, settings=settings, **options)
        rows.append({
            "task": task, "seed": seed, "rule": name, "settings": settings,
            "accuracy": result["accuracy"], "nfe": result["nfe"], "n": result["n"],
            "seconds": time.perf_counter() - started,
        })  # fmt: skip
        kind = TASKS[task]
        print(
            f"{task:8s} seed {seed} {name:20s} accuracy {result['accuracy'][kind]:.3f} "
            f"NFE {result['nfe'][kind]:.2f} ({kind}; n={result['n'][kind]})",
            flush=True,
        )
    return rows


def lm_rows(ckpt: str, judge: str, samples: int = 64, n_tokens: int = 64) -> list[dict[str, Any]]:
    """The same rules on the default language model: NFE per sample and the judge's perplexity."""
    from llada.metrics import judge_perplexity, load_judge, unigram_entropy
    from llada.text_model import load_text_model

    model = load_text_model(ckpt)
    judge_model = load_judge(judge)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(samples)]
    rows = []
    for name, settings in RULES.items():
        out = model.generate_with_info(
            prompts, n_tokens, sampler="greedy", steps=n_tokens, seed=0, **settings
        )
        texts = [f"{p} {t}" for p, t in zip(prompts, out.texts, strict=True)]
        row = {
            "task": "default LM", "rule": name, "settings": settings,
            "nfe_per_sample": sum(out.sample_nfe) / len(out.sample_nfe),
            "judge_ppl": judge_perplexity(judge_model, texts),
            "entropy": unigram_entropy([r.tolist() for r in out.tokens]),
            "tokens_per_s": out.tokens_per_second,
        }  # fmt: skip
        rows.append(row)
        print(
            f"default LM {name:20s} NFE/sample {row['nfe_per_sample']:.1f} judge ppl "
            f"{row['judge_ppl']:.1f} entropy {row['entropy']:.2f}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--runs", type=Path, default=REPO / "outputs" / "any_order")
    parser.add_argument("--lm", help="a language-model checkpoint (the default run's)")
    parser.add_argument("--judge", help="the judge for --lm: an AR .ckpt or an HF causal LM")
    parser.add_argument("--out", type=Path, default=REPO / "scripts" / "results")
    args = parser.parse_args()
    if args.lm and not args.judge:
        raise SystemExit("error: --lm needs --judge (an AR checkpoint trained on the same data)")
    sys.path.insert(0, str(REPO / "src"))
    from llada.machine import describe, summary

    print(summary(), flush=True)
    rows = [
        row
        for task in TASKS
        for seed in args.seeds
        for row in task_rows(trained_checkpoint(args.runs, task, seed), task, seed)
    ]
    if args.lm:
        rows += lm_rows(args.lm, args.judge)
    write(args, rows, describe(), summary())


def rule_summary(rows: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """Per rule, per-seed accuracy, NFE, NFE reduction and accuracy change (pt) on the task's
    headline query kind, each against the same seed's one-token-per-step decode."""
    kind = TASKS[task]
    ours = [r for r in rows if r["task"] == task]
    base = {r["seed"]: r for r in ours if r["rule"] == "one token per step"}
    out = []
    for rule in RULES:
        seeds = [r for r in ours if r["rule"] == rule]
        out.append({
            "rule": rule,
            "n": seeds[0]["n"][kind],
            "accuracy": [r["accuracy"][kind] for r in seeds],
            "nfe": [r["nfe"][kind] for r in seeds],
            "reduction": [base[r["seed"]]["nfe"][kind] / r["nfe"][kind] for r in seeds],
            "change_pt": [100 * (r["accuracy"][kind] - base[r["seed"]]["accuracy"][kind])
                          for r in seeds],
        })  # fmt: skip
    return out


def write(args: Any, rows: list[dict], machine: dict, host: str) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    summaries = {task: rule_summary(rows, task) for task in TASKS}
    payload = {"machine": machine, "seeds": args.seeds, "summary": summaries, "rows": rows}
    (args.out / "bench_parallel_decoding.json").write_text(json.dumps(payload, indent=2))
    seeds = " ".join(map(str, args.seeds))
    lines = [
        "# Parallel decoding: NFE against accuracy (scripts/bench_parallel_decoding.py)",
        "",
        f"`python scripts/bench_parallel_decoding.py --seeds {seeds}`. Host: {host}. Training "
        f"seeds {seeds} (the MDMs of scripts/any_order.py); greedy; every held-out query of each "
        "task; NFE = mean forward passes per query (per sample for the LM). Mean +- sd "
        "(min-max) over the seeds; reduction and change are taken per seed against that seed's "
        "one-token-per-step decode. Exact values vary by machine.",
        "",
        "| task (query kind) | rule | accuracy | NFE | NFE reduction | accuracy change (pt) |",
        "|---|---|---|---|---|---|",
    ]
    for task, kind in TASKS.items():
        for r in summaries[task]:
            lines.append(
                f"| {task} ({kind}, n={r['n']}) | {r['rule']} | {spread(r['accuracy'], 3)} | "
                f"{spread(r['nfe'], 2)} | {spread(r['reduction'], 2)}x | "
                f"{spread(r['change_pt'], 1)} |"
            )
    base = [r for r in rows if r["task"] in TASKS and r["rule"] == "one token per step"]
    per_seed = (f"{r['task']} seed {r['seed']} {r['accuracy'][TASKS[r['task']]]:.3f}" for r in base)
    lines += ["", "One token per step, per seed: " + "; ".join(per_seed) + "."]
    lm = [r for r in rows if r["task"] == "default LM"]
    if lm:
        lines += ["", "| default LM | rule | NFE / sample | NFE reduction | judge ppl | entropy |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for row in lm:
            lines.append(
                f"| 64 tokens | {row['rule']} | {row['nfe_per_sample']:.1f} | "
                f"{lm[0]['nfe_per_sample'] / row['nfe_per_sample']:.2f}x | "
                f"{row['judge_ppl']:.1f} | {row['entropy']:.2f} |"
            )
    (args.out / "bench_parallel_decoding.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
