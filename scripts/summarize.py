"""One table and one plot for a Hydra multirun: every job's overrides and results side by side.

    python scripts/summarize.py outputs/remasking_sweep/multirun/<date>/<time> [--quality COLUMN]

Writes summary.csv (every column), summary.md (overrides common to all jobs on one line above the
table) and pareto.png (quality vs NFE per remasking strategy, the Pareto front marked) into that
directory, and prints the markdown. A job is any directory holding `.hydra/overrides.yaml`
(training and `llada.eval` multiruns alike); from it this reads what is there:

  .hydra/overrides.yaml  the job's overrides, one column per key, as typed
  .hydra/config.yaml     the remasking strategy, when no result file names it
  metrics.csv            last logged val/* and train/loss, train/tokens_seen (the CSV logger)
  samples.jsonl          mean NFE, median tokens/s and distinct-2 of the end-of-run samples
  eval.json              `llada.eval`'s "metrics" (eval/<name>) and "settings" (eval_settings/<name>)
  task_accuracy.json     synthetic-task accuracies (task/<name>)

Quality, unless `--quality COLUMN` names one: a judge's generative perplexity from eval.json when
the jobs have it; otherwise, when the sweep varies how it samples (NFE or strategy), distinct-2 of
the samples (val/ppl does not depend on the sampler, so it cannot rank sampler settings); otherwise
val/ppl. The plot's axis label says which.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Row = dict[str, Any]

# metrics.csv columns worth a table column; the curves (loss by t, lr) stay in metrics.csv.
CSV_METRICS = re.compile(r"^(val/.+|train/loss|train/tokens_seen)$")
# Names that mean "lower is better" when --quality picks a column.
LOWER_IS_BETTER = re.compile(r"ppl|perplexity|loss|elbo|nll|seconds", re.IGNORECASE)


def flatten(prefix: str, value: Any) -> Row:
    """Nested dicts of numbers and strings -> {prefix/a/b: value}; lists (per-query records) dropped."""
    if isinstance(value, dict):
        return {
            k: v for key, item in value.items() for k, v in flatten(f"{prefix}/{key}", item).items()
        }
    if isinstance(value, (int, float, str)) or value is None:
        return {prefix: value}
    return {}


def read_overrides(job: Path) -> Row:
    lines = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    return {key: value for key, _, value in (str(line).partition("=") for line in lines)}


def read_config(job: Path) -> Row:
    config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text()) or {}
    remasking = config.get("remasking")
    return {"config/remasking": remasking.get("name")} if isinstance(remasking, dict) else {}


def read_metrics_csv(job: Path) -> Row:
    """The last non-empty value of each kept column: the final validation and the last step."""
    with (job / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    last: Row = {}
    for row in rows:
        last.update({k: float(v) for k, v in row.items() if k and CSV_METRICS.match(k) and v})
    return last


def distinct_2(texts: Iterable[str]) -> float:
    """Share of unique word bigrams over all samples: degenerate repetition scores low."""
    words = [text.split() for text in texts]
    bigrams = [tuple(row[i : i + 2]) for row in words for i in range(len(row) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else math.nan


def read_samples(job: Path) -> Row:
    """NFE is the mean over samples; tokens/s the median (the first sample also records frames)."""
    lines = (job / "samples.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    if not records:
        return {}
    return {
        "samples/remasking": records[0].get("remasking"),
        "samples/nfe": statistics.fmean(r["nfe"] for r in records),
        "samples/tokens_per_second": statistics.median(r["tokens_per_second"] for r in records),
        "samples/distinct_2": distinct_2(r["text"] for r in records),
        "samples/n": len(records),
    }


def read_eval(job: Path) -> Row:
    result = json.loads((job / "eval.json").read_text())
    return {
        **flatten("eval", result.get("metrics", {})),
        **flatten("eval_settings", result.get("settings", {})),
    }


def read_task_accuracy(job: Path) -> Row:
    result = json.loads((job / "task_accuracy.json").read_text())
    return {k: v for k, v in flatten("task", result).items() if isinstance(v, (int, float))}


# File in a job directory -> its reader. A job lacking a file simply has no such columns.
READERS: dict[str, Callable[[Path], Row]] = {
    ".hydra/config.yaml": read_config,
    "metrics.csv": read_metrics_csv,
    "samples.jsonl": read_samples,
    "eval.json": read_eval,
    "task_accuracy.json": read_task_accuracy,
}
# Summary column <- the first of these source columns a job has (the sources are then dropped).
DERIVED: dict[str, tuple[str, ...]] = {
    "strategy": ("samples/remasking", "eval_settings/remasking", "config/remasking"),
    "nfe": ("samples/nfe", "eval/nfe"),
    "tokens_per_second": ("samples/tokens_per_second", "eval/tokens_per_second"),
}


@dataclass(frozen=True)
class Quality:
    """A quality measure: which column, how the plot labels it, and which way is better."""

    pattern: str
    label: str
    higher_is_better: bool

    def find_column(self, rows: Sequence[Row]) -> str | None:
        """The first column matching `pattern` that some job has as a finite number."""
        names = dict.fromkeys(name for row in rows for name in row)
        for name in names:
            if re.fullmatch(self.pattern, name) and any(is_number(row.get(name)) for row in rows):
                return name
        return None


GEN_PPL = Quality(
    r"eval/.*(gen|judge).*(ppl|perplexity)",
    "generative perplexity of the samples (eval.json; lower is better)",
    higher_is_better=False,
)
DISTINCT_2 = Quality(
    "samples/distinct_2",
    "distinct-2 of the samples (unique word bigrams; higher is better)",
    higher_is_better=True,
)
VAL_PPL = Quality("val/ppl", "validation ELBO perplexity (lower is better)", higher_is_better=False)
# Whether the sweep varies how it samples -> the measures to try, in order.
QUALITY_ORDER: dict[bool, tuple[Quality, ...]] = {
    True: (GEN_PPL, DISTINCT_2, VAL_PPL),
    False: (GEN_PPL, VAL_PPL, DISTINCT_2),
}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def natural_key(path: Path) -> list[tuple[int, Any]]:
    """Job 10 after job 9."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", str(path)) if p]


def find_jobs(root: Path) -> list[Path]:
    return sorted(
        (p.parent.parent for p in root.rglob("overrides.yaml") if p.parent.name == ".hydra"),
        key=natural_key,
    )


def read_job(root: Path, job: Path, overrides: Row) -> Row:
    """One table row: the job's overrides, what its result files hold, and the DERIVED columns."""
    row: Row = {"job": str(job.relative_to(root)), **overrides}
    for name, reader in READERS.items():
        if not (job / name).is_file():
            continue
        try:
            row.update(reader(job))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{job / name} is unreadable ({type(error).__name__}: {error})"
            ) from None
    for column, sources in DERIVED.items():
        row[column] = next((row[s] for s in sources if row.get(s) is not None), None)
        for source in sources:
            row.pop(source, None)
    return row


def summarize(root: Path) -> tuple[list[Row], list[str], list[str]]:
    """(rows, override columns, result columns), columns in first-seen order."""
    jobs = find_jobs(root)
    if not jobs:
        raise FileNotFoundError(
            f"no Hydra jobs under {root} (no */.hydra/overrides.yaml); pass a multirun directory "
            "such as outputs/<name>/multirun/<date>/<time>"
        )
    job_overrides = [read_overrides(job) for job in jobs]
    rows = [read_job(root, job, given) for job, given in zip(jobs, job_overrides, strict=True)]
    overrides = list(dict.fromkeys(key for given in job_overrides for key in given))
    seen = dict.fromkeys([*DERIVED, *(k for row in rows for k in row)])
    results = [c for c in seen if c not in {"job", *overrides}]
    return rows, overrides, results


def choose_quality(
    rows: Sequence[Row], requested: str | None, higher: bool | None
) -> tuple[str, Quality]:
    """(column, measure): the one asked for, else the first of QUALITY_ORDER that a job has."""
    if requested:
        if not any(is_number(row.get(requested)) for row in rows):
            raise KeyError(f"--quality {requested}: no job has a number in that column")
        better = higher if higher is not None else not LOWER_IS_BETTER.search(requested)
        way = "higher" if better else "lower"
        return requested, Quality(re.escape(requested), f"{requested} ({way} is better)", better)
    varies = len({(row.get("nfe"), row.get("strategy")) for row in rows}) > 1
    for quality in QUALITY_ORDER[varies]:
        column = quality.find_column(rows)
        if column:
            return column, quality
    raise KeyError(
        "no job has a quality measure (val/ppl, samples.jsonl, eval.json); use --quality"
    )


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices (by NFE) of the points that no other point beats: as few NFE and as good, one strictly.

    A point is (nfe, quality). Equal points do not beat each other, so both stay on the front.
    """
    scored = [(nfe, quality if higher_is_better else -quality) for nfe, quality in points]

    def beats(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] <= b[0] and a[1] >= b[1] and a != b

    front = [i for i, p in enumerate(scored) if not any(beats(q, p) for q in scored)]
    return sorted(front, key=lambda i: (scored[i][0], -scored[i][1]))


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown(rows: Sequence[Row], overrides: Sequence[str], results: Sequence[str]) -> str:
    """Overrides shared by every job go on one line above the table; the varying ones are columns."""
    common = [k for k in overrides if len({row.get(k) for row in rows}) == 1 and len(rows) > 1]
    columns = ["job", *(k for k in overrides if k not in common), *results]
    shared = " ".join(f"`{k}={rows[0][k]}`" for k in common)
    lines = [f"common overrides: {shared}", ""] if common else []
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: Sequence[Row], columns: Sequence[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def plot_pareto(path: Path, rows: Sequence[Row], column: str, quality: Quality, title: str) -> bool:
    """Quality vs NFE, one series per strategy, the Pareto front circled; False if nothing to plot."""
    points = [r for r in rows if is_number(r.get("nfe")) and is_number(r.get(column))]
    if not points:
        return False
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for strategy in dict.fromkeys(str(r.get("strategy")) for r in points):
        mine = sorted(
            (r for r in points if str(r.get("strategy")) == strategy), key=lambda r: r["nfe"]
        )
        ax.plot(
            [r["nfe"] for r in mine], [r[column] for r in mine], "o-", alpha=0.8, label=strategy
        )
    xy = [(float(r["nfe"]), float(r[column])) for r in points]
    jobs_at: dict[tuple[float, float], list[str]] = {}
    for row, point in zip(points, xy, strict=True):
        jobs_at.setdefault(point, []).append(row["job"])
    for point, jobs in jobs_at.items():  # job names link the points to the table
        ax.annotate(",".join(jobs), point, xytext=(4, 3), textcoords="offset points", fontsize=7)
    front = [xy[i] for i in pareto_front(xy, quality.higher_is_better)]
    ax.plot(*zip(*front, strict=True), "k--", linewidth=1, label="Pareto front")
    ax.scatter(*zip(*front, strict=True), s=160, facecolors="none", edgecolors="black")
    nfes = sorted({x for x, _ in xy})
    if nfes[0] > 0 and nfes[-1] / nfes[0] >= 4:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    if len(nfes) <= 12:  # the NFE values the sweep ran, as plain numbers
        ax.set_xticks(nfes, [f"{x:g}" for x in nfes])
    ax.set_xlabel("NFE (network evaluations per sample)")
    ax.set_ylabel(textwrap.fill(quality.label, 40))
    ax.set_title(f"{title}: {len(points)} jobs")
    ax.grid(alpha=0.3)
    ax.legend(title="remasking", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)  # fixed size: 700 x 450 pixels
    plt.close(fig)
    return True


def sweep_title(root: Path) -> str:
    """The sweep's run name (from Hydra's multirun.yaml) and its directory."""
    multirun = root / "multirun.yaml"
    config = yaml.safe_load(multirun.read_text()) if multirun.is_file() else None
    name = config.get("name") if isinstance(config, dict) else None
    return f"{name} ({root.name})" if name else root.name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun_dir", type=Path)
    parser.add_argument("--quality", help="column to plot against NFE (default: see module doc)")
    way = parser.add_mutually_exclusive_group()
    way.add_argument("--higher-is-better", dest="higher", action="store_true", default=None)
    way.add_argument("--lower-is-better", dest="higher", action="store_false")
    args = parser.parse_args(argv)
    root: Path = args.multirun_dir
    try:
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is not a directory")
        rows, overrides, results = summarize(root)
        column, quality = choose_quality(rows, args.quality, args.higher)
    except (OSError, ValueError, KeyError, yaml.YAMLError) as error:
        message = error.args[0] if isinstance(error, KeyError) else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    write_csv(root / "summary.csv", rows, ["job", *overrides, *results])
    table = markdown(rows, overrides, results)
    (root / "summary.md").write_text(table)
    print(table)
    try:
        plotted = plot_pareto(root / "pareto.png", rows, column, quality, sweep_title(root))
    except ImportError:
        print(
            "note: matplotlib is not installed, no plot (pip install matplotlib)", file=sys.stderr
        )
        plotted = False
    if plotted:
        print(f"quality: {quality.label}; plot: {root / 'pareto.png'}")
    else:
        print(f"no plot: no job has both NFE and {quality.label}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
