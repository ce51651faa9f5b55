"""Masked diffusion vs the autoregressive baseline on a fill-in task, one command, over seeds.

    python scripts/any_order.py reversal [hydra overrides ...] [--seeds 0 1 2]
    python scripts/any_order.py sudoku
    python scripts/any_order.py infill

Trains the MDM (`experiment=<task>`) and the AR baseline (`... model=ar_tiny`: the same network
with a causal mask, same data, steps and tokens) per seed through the real `llada.train` CLI into
`outputs/any_order/<task>/seed<N>/{mdm,ar}` (a rerun reuses finished runs), reads each run's
`task_accuracy.json` and prints the accuracy table as mean +- sd (min-max) over the seeds. The
seed sets initialisation and batch order; the held-out queries never move (the task's own seed,
and for infill `data.seed=0`, fix the split). Results go to
`scripts/results/any_order_<task>.{md,json}` (`--results-dir` to change, `--no-save` to skip).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from runs import REPO, ensure_trained, spread

MODELS = {"MDM": [], "AR": ["model=ar_tiny"]}  # the one override between the two
FIXED_SPLIT = {"infill": ["data.seed=0"]}  # text data split by the run's seed unless fixed
# The headline question per task, asked of each model in the form it can use.
HEADLINES: dict[str, dict[str, dict[str, str]]] = {
    "reversal": {
        "MDM": {"forward": "forward", "reverse": "reverse_infill"},
        "AR": {"forward": "forward", "reverse": "reverse"},
    },
}


def run_overrides(task: str, model: str, seed: int, extra: list[str]) -> list[str]:
    """The `llada.train` overrides of one run (bench_parallel_decoding trains the same runs)."""
    return [
        f"experiment={task}",
        *MODELS[model],
        f"seed={seed}",
        *FIXED_SPLIT.get(task, []),
        *extra,
    ]


def run_dir(runs: Path, task: str, model: str, seed: int) -> Path:
    return runs / task / f"seed{seed}" / model.lower()


def train_one(runs: Path, task: str, model: str, seed: int, extra: list[str]) -> dict[str, Any]:
    """One finished run (trained now or before): its task_accuracy.json plus the wall time."""
    directory = run_dir(runs, task, model, seed)
    seconds = ensure_trained(directory, run_overrides(task, model, seed, extra))
    result = json.loads((directory / "task_accuracy.json").read_text())
    return {**result, "seconds": round(seconds, 1), "run_dir": str(directory), "seed": seed}


def accuracy_table(task: str, results: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: every query kind for both models (mean +- sd over seeds), then the headline."""
    first = next(iter(results.values()))[0]  # every run reports the same keys
    kinds = list(first["accuracy"])

    def cell(model: str, kind: str, metric: str = "accuracy") -> str:
        return spread([r[metric][kind] for r in results[model]], digits=3)

    lines = [
        f"| model | {' | '.join(kinds)} | train s (median) |",
        f"|---|{'---|' * len(kinds)}---|",
    ]
    for model, seeds in results.items():
        seconds = statistics.median(r["seconds"] for r in seeds)
        lines.append(f"| {model} | {' | '.join(cell(model, k) for k in kinds)} | {seconds:.0f} |")
    if "token_accuracy" in first:  # spans: the share of tokens right
        lines += ["", f"| token accuracy | {' | '.join(kinds)} |", f"|---|{'---|' * len(kinds)}"]
        for model in results:
            cells = " | ".join(cell(model, k, "token_accuracy") for k in kinds)
            lines.append(f"| {model} | {cells} |")
    headline = HEADLINES.get(task)
    if headline:
        columns = list(next(iter(headline.values())))
        lines += ["", f"| {task} | {' | '.join(columns)} |", f"|---|{'---|' * len(columns)}"]
        for model, forms in headline.items():
            cells = " | ".join(f"{cell(model, forms[c])} ({forms[c]})" for c in columns)
            lines.append(f"| {model} | {cells} |")
    per_seed = ["", "Per seed:", ""]
    for model, seeds in results.items():
        for r in seeds:
            values = ", ".join(f"{k} {r['accuracy'][k]:.3f}" for k in kinds)
            per_seed.append(f"- {model} seed {r['seed']}: {values}")
    return "\n".join(lines + per_seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=["reversal", "sudoku", "infill"])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--results-dir", type=Path, default=REPO / "scripts" / "results")
    parser.add_argument("--runs-dir", type=Path, default=REPO / "outputs" / "any_order")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from llada.machine import describe, summary

    host = summary()
    print(f"machine: {host}", flush=True)
    results = {
        model: [train_one(args.runs_dir, args.task, model, s, args.overrides) for s in args.seeds]
        for model in MODELS
    }
    table = accuracy_table(args.task, results)
    print(f"\n{args.task}: exact-match accuracy on held-out queries\n{table}")
    if args.no_save:
        return
    args.results_dir.mkdir(parents=True, exist_ok=True)
    seeds = " ".join(map(str, args.seeds))
    command = " ".join(
        ["python scripts/any_order.py", args.task, *args.overrides, "--seeds", seeds]
    )
    (args.results_dir / f"any_order_{args.task}.md").write_text(
        f"# {args.task}: MDM vs AR baseline\n\n`{command}`\n\nHost: {host}. Mean +- sd "
        f"(min-max) over training seeds {seeds}; exact values vary by machine.\n\n{table}\n"
    )
    payload = {"command": command, "machine": describe(), "seeds": args.seeds, "results": results}
    (args.results_dir / f"any_order_{args.task}.json").write_text(json.dumps(payload, indent=2))
    print(f"results written to {args.results_dir}/any_order_{args.task}.md")


if __name__ == "__main__":
    main()
