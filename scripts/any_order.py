"""Masked diffusion vs the autoregressive baseline on a fill-in task, one command.

    python scripts/any_order.py reversal [hydra overrides ...]
    python scripts/any_order.py sudoku
    python scripts/any_order.py infill

Trains the MDM (`experiment=<task>`) and the AR baseline (`... model=ar_tiny`: the same network
with a causal mask, same data, steps and tokens) through the real `llada.train` CLI, reads each
run's `task_accuracy.json` and prints the accuracy table. Results go to
`scripts/results/any_order_<task>.{md,json}` (`--results-dir` to change, `--no-save` to skip).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODELS = {"MDM": [], "AR": ["model=ar_tiny"]}  # the one override between the two
# The headline question per task, asked of each model in the form it can use.
HEADLINES: dict[str, dict[str, dict[str, str]]] = {
    "reversal": {
        "MDM": {"forward": "forward", "reverse": "reverse_infill"},
        "AR": {"forward": "forward", "reverse": "reverse"},
    },
}


def train_one(task: str, model: str, run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """One training run through the CLI; returns its task_accuracy.json plus the wall time."""
    command = [
        sys.executable, "-m", "llada.train", f"experiment={task}", *MODELS[model], *overrides,
        f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false",
    ]  # fmt: skip
    started = time.perf_counter()
    print(f"[{model}] {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, cwd=REPO)
    result = json.loads((run_dir / "task_accuracy.json").read_text())
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["run_dir"] = str(run_dir)
    return result


def accuracy_table(task: str, results: dict[str, dict[str, Any]]) -> str:
    """Markdown: every query kind for both models, then the headline (if the task has one)."""
    kinds = list(next(iter(results.values()))["accuracy"])
    lines = [
        f"| model | {' | '.join(kinds)} | train s |",
        f"|---|{'---|' * len(kinds)}---|",
    ]
    for model, result in results.items():
        cells = " | ".join(f"{result['accuracy'][kind]:.3f}" for kind in kinds)
        lines.append(f"| {model} | {cells} | {result['seconds']:.0f} |")
    headline = HEADLINES.get(task)
    if headline:
        columns = list(next(iter(headline.values())))
        lines += ["", f"| {task} | {' | '.join(columns)} |", f"|---|{'---|' * len(columns)}"]
        for model, forms in headline.items():
            cells = " | ".join(
                f"{results[model]['accuracy'][forms[c]]:.3f} ({forms[c]})" for c in columns
            )
            lines.append(f"| {model} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=["reversal", "sudoku", "infill"])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both runs")
    parser.add_argument("--results-dir", type=Path, default=REPO / "scripts" / "results")
    parser.add_argument("--runs-dir", type=Path, default=None)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    runs = args.runs_dir or REPO / "outputs" / "any_order" / args.task / stamp
    results = {
        model: train_one(args.task, model, runs / model.lower(), args.overrides) for model in MODELS
    }
    table = accuracy_table(args.task, results)
    print(f"\n{args.task}: exact-match accuracy on held-out queries\n{table}")
    if args.no_save:
        return
    args.results_dir.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python scripts/any_order.py", args.task, *args.overrides])
    (args.results_dir / f"any_order_{args.task}.md").write_text(
        f"# {args.task}: MDM vs AR baseline\n\n`{command}`\n\n{table}\n"
    )
    payload = {"command": command, "results": results}
    (args.results_dir / f"any_order_{args.task}.json").write_text(json.dumps(payload, indent=2))
    print(f"results written to {args.results_dir}/any_order_{args.task}.md")


if __name__ == "__main__":
    main()
