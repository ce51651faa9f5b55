"""REPRODUCE.md, reproduce.json and the plots, from a report of judged rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reproduction.common import MODELS, PLANS
from reproduction.rows import ROWS

START_UP_S = 10.0  # a run's cost besides its steps: a 20-step reversal run takes 8 s here


def full_estimate(records: list[dict[str, Any]]) -> float:
    """Seconds the full plan would take: per run, the start-up plus the fastest measured seconds
    per step of its kind times the full plan's steps."""
    total = 0.0
    for kind in {r["kind"] for r in records}:
        mine = [r for r in records if r["kind"] == kind]
        # the fastest run of a kind: the others may have shared the CPU with other jobs
        per_step = min(max(r["seconds"] - START_UP_S, 0) / r["steps"] for r in mine)
        runs = len(MODELS) * PLANS["full"]["seeds"][kind]
        total += (START_UP_S + per_step * PLANS["full"]["steps"][kind]) * runs
    return total


def cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "/").replace("\n", " ")


def summary_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| row | claim | published (source) | our protocol | measured here | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in report["rows"].items():
        for c in row["claims"]:
            lines.append(
                f"| {name} | {cell(c['claim'])} | {cell(c['published'])} ({cell(c['source'])}) "
                f"| {cell(c['protocol'])} | {cell(c['measured'])} | **{c['verdict']}** |"
            )
    return lines


def row_section(name: str, row: dict[str, Any]) -> list[str]:
    """A row's own section: mode, time, each claim's verdict and why, its plot."""
    lines = [f"## {name}: {row['title']}", ""]
    how = f"Mode **{row['mode']}**" if row.get("runs") else "No training (read from JSONs)"
    earlier = reused_seconds(row)
    lines.append(
        f"{how}, measured {row['when']} in {row['seconds']:.0f} s"
        + (f" ({earlier / 60:.0f} min of its runs' training were done before and reused)"
           if earlier else "")
        + (f" (the full plan: about {row['full_estimate'] / 60:.0f} min, estimated)" if
           row.get("full_estimate") and row["mode"] != "full" else "")
        + "."
    )  # fmt: skip
    lines.append("")
    for c in row["claims"]:
        lines += [
            f"- **{c['claim']}**: {c['verdict']}. {c['why'][:1].upper()}{c['why'][1:]}.",
            f"  Published: {c['published']} ({c['source']}). Measured: {c['measured']}.",
        ]
    if row.get("plot"):
        lines += ["", f"![{name}]({row['plot']})"]
    return [*lines, ""]


def plan_text(plans: dict[str, dict[str, dict[str, int]]], mode: str) -> str:
    """A mode's budget in words: steps x seeds per kind of run (both models get each)."""
    plan = plans[mode]
    runs = ", ".join(f"{kind} {steps} steps x {plan['seeds'][kind]} seed(s)"
                     for kind, steps in plan["steps"].items())  # fmt: skip
    return f"{mode}: {runs}"


def reused_seconds(row: dict[str, Any]) -> float:
    """Seconds of a row's training done before it was measured (the runs it found finished)."""
    runs = row.get("runs", [])
    if all("reused" in run for run in runs):
        return sum(run["seconds"] for run in runs if run["reused"])
    # reports written before runs said so: whatever training exceeds the row's own time
    return max(sum(run["seconds"] for run in runs) - row["seconds"], 0.0)


def reused(report: dict[str, Any]) -> float:
    """Seconds of training that rows reused from runs finished before they were measured."""
    return sum(reused_seconds(row) for row in report["rows"].values())


def full_time(report: dict[str, Any], modes: list[str]) -> str:
    """What the full plan costs: measured when every row ran it, else estimated from the
    quick rows' seconds per training step."""
    if modes == ["full"]:
        trained = sum(
            run["seconds"] for row in report["rows"].values() for run in row.get("runs", [])
        )
        return (
            f"The full plan's runs took {trained / 60:.0f} min of training in all on this host "
            "(the sum of their wall times, measured)."
        )
    if not report.get("full_estimate"):
        return ""
    return (
        f"The full run (`python scripts/reproduce.py`) is estimated at "
        f"{report['full_estimate'] / 60:.0f} min on this host from the measured seconds per "
        "training step (not run end to end)."
    )


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    isa = "/".join(machine.get("isa", [])) or "unknown ISA"
    modes = sorted({row["mode"] for row in report["rows"].values() if row.get("runs")})
    plans = report.get("plans", PLANS)
    lines = [
        "# Reproducing the field's results at small scale (scripts/reproduce.py)",
        "",
        f"`{report['command']}`. Rows were produced in mode: **{', '.join(modes)}**. "
        f"{plan_text(plans, 'quick')}; {plan_text(plans, 'full')}. Host: "
        f"{machine.get('cpu')} ({isa}; torch uses {machine.get('torch_cpu_capability')}), "
        f"{machine.get('threads')} threads, torch {machine.get('torch')}. **Exact values vary by "
        "machine** (different float paths, and a 2M-parameter model amplifies them) and by seed; "
        "the verdicts are about the shape of each result, not its digits.",
        "",
        f"Time of all rows as measured (one process, nothing else running): "
        f"{report['seconds'] / 60:.1f} min"
        + (f" ({report['note']})" if report.get("note") else "")
        + (
            f", besides {reused(report) / 60:.0f} min of training done before and reused (the "
            "rows say which)"
            if reused(report)
            else ""
        )
        + ". "
        + full_time(report, modes),
        "",
        "Verdicts: *holds* (the published shape is seen here, beyond the seed spread), *does "
        "not hold* (the opposite is seen), *inconclusive* (within noise or margin), *not yet "
        "measured*. The MDM's perplexities are ELBO bounds (upper bounds), the AR's are exact.",
        "",
        *summary_table(report),
        "",
    ]
    for name, row in report["rows"].items():
        lines += row_section(name, row)
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: Path) -> Path:
    """reproduce.json, REPRODUCE.md and each row's plot, all under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for name, row in report["rows"].items():
        plot = ROWS[name].plot if name in ROWS else None
        if plot is not None and row.get("data"):
            row["plot"] = f"reproduce_{name}.png"
            plot(row["data"], out / row["plot"])
    (out / "reproduce.json").write_text(json.dumps(report, indent=2) + "\n")
    md = out / "REPRODUCE.md"
    md.write_text(markdown(report) + "\n")
    return md
