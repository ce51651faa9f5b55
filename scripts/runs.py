"""Helpers the benchmark scripts share: one `llada.train` run through the CLI, and what it left.

Kept here (not copied per script) so every script trains and reads runs the same way:
`python scripts/X.py` puts scripts/ on sys.path, so `from runs import ...` works from any of them.
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
QUIET = ["trainer.enable_progress_bar=false", "callbacks.samples.num_samples=0"]
DONE = "done.json"  # written after a run finished: a rerun of a script reuses it


def finished(run_dir: Path) -> bool:
    """Whether `train_logged` completed this run before (its outputs can be read as they are)."""
    return (run_dir / DONE).is_file()


def train_command(run_dir: Path, overrides: list[str]) -> list[str]:
    """The `llada.train` command of a run (its first log line, so a resume can check it)."""
    return [sys.executable, "-m", "llada.train", *overrides, *QUIET, f"hydra.run.dir={run_dir}"]


def train_logged(run_dir: Path, overrides: list[str], resume: bool = False) -> float:
    """One `llada.train` run into run_dir, its output in run_dir/train.log (a long script's own
    progress stays readable); returns its wall seconds. `resume` continues an interrupted run
    from its last.ckpt (exact resume) and appends to its log. A failure raises with the log's
    tail."""
    run_dir.mkdir(parents=True, exist_ok=True)
    command = train_command(run_dir, overrides)
    log = run_dir / "train.log"
    started = time.perf_counter()
    with log.open("a" if resume else "w") as handle:
        handle.write(" ".join(command) + ("  (resumed: ckpt_path=last)\n" if resume else "\n"))
        handle.flush()
        full = [*command, "ckpt_path=last"] if resume else command
        code = subprocess.run(full, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
    if code:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RuntimeError(f"llada.train failed (exit {code}) in {run_dir}:\n{tail}")
    done = {"seconds": seconds, "overrides": overrides, **({"resumed": True} if resume else {})}
    (run_dir / DONE).write_text(json.dumps(done))
    return seconds


def ensure_trained(run_dir: Path, overrides: list[str]) -> float:
    """`train_logged` unless run_dir already holds a finished run of these very overrides (a
    rerun of a script then reuses it); an interrupted one of the same command is resumed from
    its last.ckpt; returns the run's wall seconds (of the resumed part, for a resumed run). A run
    of other overrides is never reused, resumed nor trained over: that raises, naming the
    directory."""
    if finished(run_dir):
        recorded = json.loads((run_dir / DONE).read_text()).get("overrides")
        if recorded != overrides:
            raise SystemExit(
                f"error: {run_dir} holds a run of other overrides ({recorded}); "
                "pass another runs directory or delete that one"
            )
        return train_seconds(run_dir)
    interrupted = (run_dir / "checkpoints" / "last.ckpt").is_file()
    if interrupted:
        logged = (run_dir / "train.log").read_text().splitlines()[:1]
        if logged != [" ".join(train_command(run_dir, overrides))]:
            raise SystemExit(
                f"error: {run_dir} holds an interrupted run of another command ({logged}); "
                "pass another runs directory or delete that one"
            )
    print(f"[train] {run_dir}: {' '.join(overrides)}" + (" (resumed)" if interrupted else ""),
          flush=True)  # fmt: skip
    return train_logged(run_dir, overrides, resume=interrupted)


def spread(values: list[float], digits: int = 1, scale: float = 1.0) -> str:
    """Mean +- sd (min-max, n seeds) of the values, or the one value when there is one seed."""
    scaled = [v * scale for v in values]
    if len(scaled) == 1:
        return f"{scaled[0]:.{digits}f} (1 seed)"
    return (
        f"{statistics.fmean(scaled):.{digits}f} +- {statistics.stdev(scaled):.{digits}f} "
        f"({min(scaled):.{digits}f}-{max(scaled):.{digits}f}, {len(scaled)} seeds)"
    )


def train_seconds(run_dir: Path) -> float:
    """The wall time `train_logged` recorded for a finished run."""
    return float(json.loads((run_dir / DONE).read_text())["seconds"])


def validations(run_dir: Path) -> list[dict[str, float]]:
    """Every logged val/* row of a run's metrics.csv (step, ppl, NLL, stderr), in step order."""
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    val = [r for r in rows if r.get("val/ppl")]
    if not val:
        raise ValueError(f"{run_dir}/metrics.csv has no val/ppl row; did the run finish?")
    return [
        {
            "step": int(float(r["step"])) + 1,  # steps done (the row is logged at index step-1)
            "val_ppl": float(r["val/ppl"]),
            "val_nll": float(r["val/elbo"]),
            "val_nll_stderr": float(r["val/elbo_stderr"]),
        }
        for r in val
    ]


def task_options(data_config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's synthetic-task options (seed, sizes, ...) as `llada.tasks.task_accuracy`
    takes them: the held-out queries are then the ones the run was trained without."""
    corpus = dict(data_config["corpus"])
    return {k: v for k, v in corpus.items() if not k.startswith("_") and k not in ("task", "split")}
