"""The README's main job over seeds: how much its headline figures vary on one machine.

    python scripts/bench_main_job.py [--seeds 0 1 2] [--runs DIR] [--reuse] [hydra overrides ...]

Runs `python -m llada.train seed=S data.seed=0` (the main job of the README, whose seed is 0) once
per seed, one process at a time, and records the wall time, the peak RSS and the validation ELBO
perplexity at every validation (steps 250, 500, 750). The seed sets the initialisation and the
masks; `data.seed=0` keeps the main job's split, tokenizer and batch order, so every seed is
scored on the same validation blocks. Writes bench_main_job.{md,json}: mean,
standard deviation and min-max over seeds, with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from runs import REPO, spread


def validations(run_dir: Path) -> dict[int, float]:
    """{steps done: val/ppl} of a finished run."""
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    return {int(float(r["step"])) + 1: float(r["val/ppl"]) for r in rows if r.get("val/ppl")}


def run_one(run_dir: Path, seed: int, overrides: list[str]) -> dict[str, Any]:
    """The main job with `seed` in a fresh process: wall seconds and peak RSS (this child only)."""
    command = [sys.executable, "-m", "llada.train", f"seed={seed}", "data.seed=0", *overrides,
               "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"]  # fmt: skip
    print(f"[seed {seed}] {' '.join(command[3:])}", flush=True)
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"seed {seed} failed; see {run_dir}")
    record = {"seconds": round(seconds, 1), "peak_gb": round(usage.ru_maxrss / 2**20, 2)}
    print(f"  {seconds:.0f} s, val ppl {validations(run_dir)}", flush=True)
    (run_dir / "bench_main_job.json").write_text(json.dumps(record))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, default=REPO / "outputs" / "bench_main_job")
    parser.add_argument("--reuse", action="store_true", help="read finished runs, train none")
    args, overrides = parser.parse_known_args()
    sys.path.insert(0, str(REPO / "src"))
    from llada.machine import describe, summary

    print(f"machine: {summary()}", flush=True)
    runs = []
    for index, seed in enumerate(args.seeds, start=1):
        run_dir = args.runs / f"seed{seed}"
        print(f"[{index}/{len(args.seeds)}]", end=" ", flush=True)
        done = run_dir / "bench_main_job.json"
        record = json.loads(done.read_text()) if args.reuse or done.is_file() else None
        record = record or run_one(run_dir, seed, overrides)
        runs.append({"seed": seed, **record, "val_ppl": validations(run_dir)})
    write(runs, overrides, describe(), summary())


def write(runs: list[dict[str, Any]], overrides: list[str], machine: dict, line: str) -> None:
    out = REPO / "scripts" / "results" / "bench_main_job"
    payload = {"machine": machine, "overrides": overrides, "runs": runs}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    steps = sorted(runs[0]["val_ppl"])
    seeds = " ".join(str(run["seed"]) for run in runs)
    lines = [
        "# The main job over seeds (scripts/bench_main_job.py)",
        "",
        f"`python scripts/bench_main_job.py --seeds {seeds} {' '.join(overrides)}`".rstrip()
        + f"; measured on {line}, one run at a time. Mean +- sd (min-max) over "
        f"{len(runs)} seeds; exact values vary by machine (CPUs take different float paths).",
        "",
        "| figure | value |",
        "|---|---|",
        *(
            f"| validation ELBO perplexity at step {step} | "
            f"{spread([run['val_ppl'][step] for run in runs])} |"
            for step in steps
        ),
        f"| wall time, s | {spread([run['seconds'] for run in runs], 0)} |",
        f"| peak RSS, GB | {spread([run['peak_gb'] for run in runs], 2)} |",
        "",
        "Per seed (final perplexity): "
        + ", ".join(f"seed {run['seed']}: {run['val_ppl'][steps[-1]]:.1f}" for run in runs),
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
