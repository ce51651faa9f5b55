"""Validation perplexity against the block size L' (BD3-LM table 3 in small), and clipping.

    python scripts/bench_block_size.py [--seeds 0 1 2] [--steps 400] [--runs DIR] [--reuse]
                                       [--only NAME ...] [hydra overrides ...]

Every setting trains the same network size (experiment=quick: 2 layers, dim 96, 64-token
sequences) on the same data (one train/validation split, `data.seed=0`), batch size and steps
through the real `llada.train` CLI, one process at a time; the seed sets the initialisation and
the batch order: the AR baseline, objective=bd3 with L' = 1, 4, 8, 16 and 64 (= the sequence: the MDM
limit), LLaDA's MDM, and two clipped bd3 L'=16 runs (a fixed U[0.3, 0.8] and the data-driven
clip search). Reported per setting: best-of-run and final validation perplexity (the AR's is
exact, the others are ELBO bounds with val_mc_samples draws), mean and spread over seeds, and
the training loss's row variance (its median over the second half of training: what clipping
lowers). Writes bench_block_size.{md,json}.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from runs import REPO, ensure_trained, spread

SEARCH = "[[0.0,1.0],[0.3,0.8],[0.45,0.95],[0.15,0.9]]"
SETTINGS: dict[str, list[str]] = {
    "ar": ["model=ar_tiny"],
    "bd3 L'=1": ["objective=bd3", "objective.block_size=1"],
    "bd3 L'=4": ["objective=bd3", "objective.block_size=4"],
    "bd3 L'=8": ["objective=bd3", "objective.block_size=8"],
    "bd3 L'=16": ["objective=bd3", "objective.block_size=16"],
    "bd3 L'=64 (= MDM)": ["objective=bd3", "objective.block_size=64"],
    "mdm (LLaDA)": [],
    "bd3 L'=16 clip U[0.3,0.8]": [
        "objective=bd3", "objective.block_size=16", "masking.t_min=0.3", "masking.t_max=0.8",
    ],
    "bd3 L'=16 clip search": [
        "objective=bd3", "objective.block_size=16", f"objective.clip_search={SEARCH}",
    ],
}  # fmt: skip


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def read_run(run_dir: Path) -> dict[str, Any]:
    """Validation perplexities in step order and the mean training-loss row variance."""
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    ppl = [float(r["val/ppl"]) for r in rows if r.get("val/ppl")]
    if not ppl:
        raise ValueError(f"{run_dir}/metrics.csv has no val/ppl row; did the run finish?")
    variance = [float(r["train/loss_var"]) for r in rows if r.get("train/loss_var")]
    late = variance[len(variance) // 2 :]  # the second half: past the first fast descent
    clip = [(r["val/clip_t_min"], r["val/clip_t_max"]) for r in rows if r.get("val/clip_t_min")]
    return {
        "val_ppl": ppl,
        "best_ppl": min(ppl),
        "final_ppl": ppl[-1],
        "loss_var": statistics.median(late) if late else None,  # robust to a spiky step
        "chosen_clip": [float(v) for v in clip[-1]] if clip else None,
    }


def train(setting: str, seed: int, run_dir: Path, steps: int, overrides: list[str]) -> float:
    """One run of the quick network (reused when run_dir holds it finished); wall seconds."""
    return ensure_trained(run_dir, [
        "experiment=quick", *SETTINGS[setting], f"seed={seed}", "data.seed=0",
        f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps // 4}",
        "callbacks.samples.prompts=[]", *overrides,
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--runs", type=Path, default=REPO / "outputs" / "bench_block_size")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="read runs, train none (finished runs are always kept: an interrupted sweep "
        "continues where it stopped)",
    )
    parser.add_argument("--only", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args, overrides = parser.parse_known_args()
    sys.path.insert(0, str(REPO / "src"))
    from llada.machine import describe, summary

    print(f"machine: {summary()}", flush=True)
    results: dict[str, Any] = {}
    for setting in args.only:
        runs = []
        for seed in args.seeds:
            run_dir = args.runs / slug(setting) / f"seed{seed}"
            seconds = None if args.reuse else train(setting, seed, run_dir, args.steps, overrides)
            runs.append({"seed": seed, "seconds": seconds, **read_run(run_dir)})
            print(f"  seed {seed}: final {runs[-1]['final_ppl']:.1f}", flush=True)
        results[setting] = runs
    write(results, args, describe(), summary())


def write(results: dict[str, Any], args: Any, machine: dict[str, Any], line: str) -> None:
    out = REPO / "scripts" / "results" / "bench_block_size"
    out.with_suffix(".json").write_text(
        json.dumps({"machine": machine, "steps": args.steps, "results": results}, indent=2)
    )
    lines = [
        "# Validation perplexity against block size (scripts/bench_block_size.py)",
        "",
        f"`python scripts/bench_block_size.py --steps {args.steps} --seeds "
        f"{' '.join(map(str, args.seeds))}`; measured on {line}. Same network "
        "(experiment=quick: 2 layers, dim 96, 64-token sequences, batch 32), data split, batch "
        f"size and steps ({args.steps}) for every row; the seed sets initialisation and order; mean +- standard deviation over "
        f"{len(args.seeds)} seeds. AR perplexity is exact; the others are ELBO bounds (4 "
        "Monte-Carlo draws per validation block). Exact values vary by machine.",
        "",
        "| setting | best val ppl | final val ppl | train loss row variance (median) | clip chosen |",
        "|---|---|---|---|---|",
    ]
    for setting, runs in results.items():
        variances = [r["loss_var"] for r in runs if r["loss_var"] is not None]
        chosen = {tuple(r["chosen_clip"]) for r in runs if r["chosen_clip"]}
        lines.append(
            f"| {setting} | {spread([r['best_ppl'] for r in runs])} | "
            f"{spread([r['final_ppl'] for r in runs])} | "
            f"{f'{statistics.fmean(variances):.3f}' if variances else '-'} | "
            f"{', '.join(f'[{a:g}, {b:g}]' for a, b in sorted(chosen)) or '-'} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
