"""diffu-GRPO against continued SFT for the same wall time, on held-out 4x4 Sudoku.

    python scripts/bench_grpo.py [--seeds 0 1 2] [--start-steps 800] [--seconds 120]
                                 [--runs DIR] [--reuse]

Trains one start (`experiment=sudoku`, `--start-steps` steps: a model with room to improve) and
scores it on the held-out puzzles. Then, per seed, two runs from that checkpoint
(`model.init_from`) for the same training wall time (`trainer.max_time`, so each method gets as
many steps as it can afford on this host):
- GRPO: `experiment=grpo_sudoku` (rollouts on puzzles over training grids, reward 1 for the
  solved grid, d1's mean-field log-probabilities, k3 KL to the start);
- SFT, the fair baseline: `objective=mdm` on the same rows (the training puzzles with their
  solutions), 32 rows a step as GRPO's 4 prompts x 8 completions.
The held-out puzzles (`TaskAccuracy`, greedy) are never used for rollouts or SFT. Writes
scripts/results/bench_grpo.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from runs import REPO, train_logged

METHODS = {  # name -> overrides on top of experiment=grpo_sudoku
    "GRPO": [],
    "SFT (same rows)": ["objective=mdm", "data.batch_size=32"],
}


def finished(run_dir: Path) -> bool:
    """A run that ended (its held-out score is written): kept when the script runs again."""
    return (run_dir / "task_accuracy.json").is_file()


def score(run_dir: Path) -> dict[str, Any]:
    """Held-out whole-grid accuracy, its query count and the step the run ended at."""
    result = json.loads((run_dir / "task_accuracy.json").read_text())
    return {"accuracy": result["accuracy"]["infill"], "n": result["n"]["infill"],
            "step": result["step"]}  # fmt: skip


def mean_sd(values: list[float]) -> str:
    spread = f" +- {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.3f}{spread}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--start-steps", type=int, default=800)
    parser.add_argument("--seconds", type=int, default=120, help="training wall time per run")
    parser.add_argument("--runs", type=Path, default=REPO / "outputs" / "bench_grpo")
    parser.add_argument("--reuse", action="store_true", help="read finished runs, train none")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from llada.machine import describe, summary

    print(f"machine: {summary()}", flush=True)
    start_dir = args.runs / "start"
    if not (args.reuse or finished(start_dir)):
        steps = args.start_steps
        print(f"[start] experiment=sudoku, {steps} steps", flush=True)
        train_logged(start_dir, ["experiment=sudoku", f"trainer.max_steps={steps}",
                          f"trainer.val_check_interval={steps}", "seed=0"])  # fmt: skip
    start_ckpt = start_dir / "checkpoints" / "last.ckpt"
    minutes, seconds = divmod(args.seconds, 60)
    budget = f"+trainer.max_time='00:00:{minutes:02d}:{seconds:02d}'"  # DD:HH:MM:SS
    results: dict[str, Any] = {"start": score(start_dir), "runs": {}}
    total = len(METHODS) * len(args.seeds)
    for index, (seed, (method, extra)) in enumerate(
        ((s, m) for s in args.seeds for m in METHODS.items()), start=1
    ):
        run_dir = args.runs / method.split()[0].lower() / f"seed{seed}"
        print(f"[{index}/{total}] {method}, seed {seed}", flush=True)
        if not (args.reuse or finished(run_dir)):
            train_logged(run_dir, ["experiment=grpo_sudoku", f"model.init_from={start_ckpt}",
                            f"seed={seed}", "trainer.max_steps=100000",
                            "trainer.val_check_interval=1000000", budget, *extra])  # fmt: skip
        results["runs"].setdefault(method, []).append({"seed": seed, **score(run_dir)})
    write(results, args, describe(), summary())


def write(results: dict[str, Any], args: Any, machine: dict[str, Any], line: str) -> None:
    out = REPO / "scripts" / "results" / "bench_grpo"
    payload = {"machine": machine, "start_steps": args.start_steps, "seconds": args.seconds,
               "seeds": args.seeds, **results}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    start = results["start"]
    lines = [
        "# GRPO against continued SFT on held-out Sudoku (scripts/bench_grpo.py)",
        "",
        f"`python scripts/bench_grpo.py --start-steps {args.start_steps} --seconds "
        f"{args.seconds} --seeds {' '.join(map(str, args.seeds))}`; measured on {line}.",
        "",
        f"Start: `experiment=sudoku` for {args.start_steps} steps (seed 0), held-out whole-grid "
        f"accuracy {start['accuracy']:.3f} on {start['n']} puzzles (greedy). Each method then "
        f"trains from that checkpoint for {args.seconds} s of training wall time "
        "(`trainer.max_time`) on the training puzzles only; the seed sets the batch order, "
        "the rollouts' noise and the masks. Exact values vary by machine.",
        "",
        "| method | held-out accuracy (mean +- sd) | change from start | steps in the budget "
        "| per seed |",
        "|---|---|---|---|---|",
    ]
    for method, runs in results["runs"].items():
        accuracies = [run["accuracy"] for run in runs]
        change = statistics.fmean(accuracies) - start["accuracy"]
        steps = "/".join(str(run["step"]) for run in runs)
        per_seed = ", ".join(f"{value:.3f}" for value in accuracies)
        lines.append(
            f"| {method} | {mean_sd(accuracies)} | {100 * change:+.1f} pt | {steps} | {per_seed} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
