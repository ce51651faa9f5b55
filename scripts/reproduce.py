"""The field's headline results at small scale, one command: claim, protocol, measurement, verdict.

    python scripts/reproduce.py [--quick] [--only NAME] [--runs DIR] [--out DIR]
    python scripts/reproduce.py --report-only   # re-judge reproduce.json, rewrite md and plots

Rows (`--only` runs one; the others are kept from an earlier reproduce.json):
- data-constrained: MDM vs AR on a small slice of Shakespeare repeated for many epochs
  (Prabhudesai et al. 2025): the AR overfits, the MDM keeps improving; does its best pass the AR's?
- planning: Sudoku and Countdown, MDM vs AR at equal size and data (Ye et al. 2024), and the MDM's
  decoding order on Sudoku (random vs low_confidence vs margin; Kim et al. 2025).
- reversal: facts learned one way, asked both ways (LLaDA, Nie et al. 2025, Table 4's shape).
- benchmarks: rows already measured by other scripts, read from their committed JSONs (an absent
  one says "not yet measured"); `--only benchmarks` re-reads them in seconds.

Every model is trained through the real `llada.train` CLI (outputs under outputs/reproduce/); the
decoding-order scores load the trained Sudoku checkpoints with `llada.tasks`. Writes
scripts/results/REPRODUCE.md, reproduce.json and reproduce_*.png. `--quick` is the small budget
(under 20 min on 2 cores; one seed where the full run has three, except the cheap
data-constrained row); the md says which mode produced each row. `--runs DIR` reuses the finished
runs in DIR (same kind, model, steps and seed), so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from reproduction.common import PLANS, RESULTS, Context
from reproduction.report import full_estimate, write_report
from reproduction.rows import ROWS
from runs import REPO


def measure(name: str, ctx: Context) -> dict[str, Any]:
    """Run one row and judge it: the entry reproduce.json keeps for it."""
    row = ROWS[name]
    ctx.row, ctx.done, ctx.records = name, 0, []
    ctx.total = row.steps(ctx.plan)
    started = time.perf_counter()
    data = row.run(ctx)
    return {
        "title": row.title, "mode": ctx.mode, "when": time.strftime("%Y-%m-%d"),
        "seconds": time.perf_counter() - started, "full_estimate": full_estimate(ctx.records),
        "claims": row.judge(data), "data": data, "runs": ctx.records,
    }  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small budget (< 20 min)")
    parser.add_argument("--only", choices=list(ROWS), metavar="NAME",
                        help=f"run one row: {', '.join(ROWS)}")  # fmt: skip
    parser.add_argument("--runs", type=Path, default=None, help="run directory (reused if set)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="where REPRODUCE.md, reproduce.json and the plots go")  # fmt: skip
    parser.add_argument("--report-only", action="store_true",
                        help="re-judge reproduce.json's data and rewrite the md and plots")  # fmt: skip
    args = parser.parse_args(argv)
    return args


def previous(out: Path) -> dict[str, Any]:
    """The rows of an earlier reproduce.json (kept when --only reruns one)."""
    path = out / "reproduce.json"
    return json.loads(path.read_text()).get("rows", {}) if path.is_file() else {}


def rejudge(out: Path) -> Path:
    """Rewrite the md and plots from reproduce.json's data (after a change to a verdict's rule
    or a plot), training nothing."""
    report = json.loads((out / "reproduce.json").read_text())
    for name, row in report["rows"].items():
        row["claims"] = ROWS[name].judge(row["data"])
        row["full_estimate"] = full_estimate(row.get("runs", []))
    report["full_estimate"] = sum(row["full_estimate"] for row in report["rows"].values())
    return write_report(report, out)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report_only:
        print(f"wrote {rejudge(args.out)}")
        return
    sys.path.insert(0, str(REPO / "src"))
    from llada.machine import describe, summary

    mode = "quick" if args.quick else "full"
    runs = args.runs or REPO / "outputs" / "reproduce" / f"{mode}_{time.strftime('%Y%m%d_%H%M%S')}"
    print(f"machine: {summary()} (exact values vary by machine)\nruns: {runs}", flush=True)
    started = time.perf_counter()
    names = [args.only] if args.only else list(ROWS)
    rows = previous(args.out) if args.only else {}
    ctx = Context(mode=mode, runs=runs)
    for name in names:
        rows[name] = measure(name, ctx)
        for c in rows[name]["claims"]:
            print(f"  {name}: {c['claim']}: {c['verdict']} ({c['measured']})", flush=True)
    rows = {name: rows[name] for name in ROWS if name in rows}  # the registry's order
    command = "python scripts/reproduce.py" + (" --quick" if args.quick else "")
    command += f" --only {args.only}" if args.only else ""
    report = {
        "command": command, "machine": describe(), "plans": PLANS,
        "seconds": sum(row["seconds"] for row in rows.values()),  # kept rows count too
        "full_estimate": sum(row.get("full_estimate", 0.0) for row in rows.values()),
        "rows": rows,
    }  # fmt: skip
    md = write_report(report, args.out)
    print(f"wrote {md} ({(time.perf_counter() - started) / 60:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
