"""What every row of scripts/reproduce.py shares: the budgets, a run through `llada.train`, the
verdict rules and the plot backend."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runs import REPO, finished, train_logged, train_seconds

RESULTS = REPO / "scripts" / "results"
AR = ["model=ar_tiny"]  # the one override between the two models: same network, causal
MODELS = {"MDM": [], "AR": AR}
VERDICTS = ("holds", "does not hold", "inconclusive", "not yet measured")

# Budgets. "steps" per kind of run; "seeds" per kind (every model of a kind gets each seed).
PLANS: dict[str, dict[str, dict[str, int]]] = {
    "quick": {
        "steps": {"shakespeare": 300, "sudoku": 1000, "countdown": 600, "reversal": 2400},
        "val_every": {"shakespeare": 25, "sudoku": 1000, "countdown": 600, "reversal": 2400},
        "seeds": {"shakespeare": 3, "sudoku": 1, "countdown": 1, "reversal": 1},
    },
    "full": {
        "steps": {"shakespeare": 1500, "sudoku": 4000, "countdown": 3000, "reversal": 6000},
        "val_every": {"shakespeare": 50, "sudoku": 1000, "countdown": 1000, "reversal": 2000},
        "seeds": {"shakespeare": 3, "sudoku": 3, "countdown": 3, "reversal": 3},
    },
}


@dataclass
class Context:
    """What a row needs to run: the budget, where runs go, and a progress counter."""

    mode: str
    runs: Path
    row: str = ""
    total: int = 0
    done: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def plan(self) -> dict[str, dict[str, int]]:
        return PLANS[self.mode]

    def seeds(self, kind: str) -> range:
        return range(self.plan["seeds"][kind])


@contextmanager
def progress(ctx: Context, what: str) -> Iterator[None]:
    """Print "[row 2/6] what ..." before a long step and its seconds after it."""
    ctx.done += 1
    print(f"[{ctx.row} {ctx.done}/{ctx.total}] {what} ...", end="", flush=True)
    started = time.perf_counter()
    yield
    print(f" {time.perf_counter() - started:.0f} s", flush=True)


def train(ctx: Context, kind: str, model: str, seed: int, overrides: list[str]) -> Path:
    """One training run (or the finished one already in ctx.runs); records its cost."""
    steps, every = ctx.plan["steps"][kind], ctx.plan["val_every"][kind]
    run_dir = ctx.runs / kind / f"{model.lower()}_{steps}steps_seed{seed}"  # reused only as such
    budget = [f"trainer.max_steps={steps}", f"trainer.val_check_interval={every}", f"seed={seed}"]
    reused = finished(run_dir)
    what = "reusing" if reused else "training"
    with progress(ctx, f"{what} {model} {kind} seed {seed} ({steps} steps)"):
        if not reused:
            train_logged(run_dir, [*overrides, *MODELS[model], *budget])
    ctx.records.append({"kind": kind, "model": model, "seed": seed, "steps": steps,
                        "seconds": train_seconds(run_dir), "reused": reused})  # fmt: skip
    return run_dir


def task_score(run_dir: Path, kind: str) -> float:
    """Exact-match accuracy of one query kind from the run's task_accuracy.json."""
    return float(json.loads((run_dir / "task_accuracy.json").read_text())["accuracy"][kind])


def ahead(better: list[float], worse: list[float], margin: float) -> str:
    """Verdict on "better > worse": holds when the means differ by more than `margin` and
    (with several seeds) the ranges do not overlap; the reverse gap gives "does not hold"."""
    gap = statistics.fmean(better) - statistics.fmean(worse)
    separated = min(better) > max(worse) if gap > 0 else max(better) < min(worse)
    if abs(gap) <= margin or (len(better) > 1 and not separated):
        return "inconclusive"
    return "holds" if gap > 0 else "does not hold"


def paired_ahead(better: list[float], worse: list[float], margin: float) -> str:
    """Verdict on "better > worse" for two measurements of the same models (one pair per seed,
    e.g. two decoding orders of one checkpoint): holds when the mean gap exceeds `margin` and
    every seed's gap has its sign; the seed-to-seed spread of the models themselves cancels."""
    gaps = [b - w for b, w in zip(better, worse, strict=True)]
    mean = statistics.fmean(gaps)
    if mean > margin and min(gaps) > 0:
        return "holds"
    if mean < -margin and max(gaps) < 0:
        return "does not hold"
    return "inconclusive"


def claim(**fields: str) -> dict[str, str]:
    """One table row: claim, published, source, protocol, measured, verdict, why."""
    if fields["verdict"] not in VERDICTS:
        raise ValueError(f"verdict {fields['verdict']!r} is not one of {VERDICTS}")
    return fields


def accuracy_bars(bars: dict[str, list[float]], colors: list[str], title: str, path: Path) -> None:
    """One bar per entry: the mean in %, min-max whiskers, a dot per seed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(bars)), 4.5), dpi=100)
    for x, (values, color) in enumerate(zip(bars.values(), colors, strict=True)):
        pct = [100 * v for v in values]
        mean = statistics.fmean(pct)
        ax.bar(x, mean, color=color, alpha=0.7)
        ax.errorbar(x, mean, yerr=[[mean - min(pct)], [max(pct) - mean]], color="black", capsize=4)
        ax.scatter([x] * len(pct), pct, color="black", s=12, zorder=3)
        ax.text(x, mean + 2, f"{mean:.0f}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(bars)), list(bars), fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_ylabel("exact-match accuracy (%)")
    ax.set_title(f"{title} (bar: mean, dots: seeds, whiskers: min-max)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def host(payload: dict[str, Any]) -> str:
    """The machine line of a results JSON ("unknown host" for files that did not store one)."""
    machine = payload.get("machine")
    if not isinstance(machine, dict):
        return "unknown host"
    return f"{machine.get('cpu', '?')} ({'/'.join(machine.get('isa', [])) or '?'})"


def mean_of(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(run[key]) for run in runs]


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
