"""Benchmark scripts over seeds, on hand-made finished runs (no training): the per-seed figures,
their summary, and the refusal to reuse a run of other overrides."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def finished_run(run_dir: Path, overrides: list[str], val_ppl: list[float]) -> None:
    """What runs.train_logged leaves: done.json with the overrides, metrics.csv with validations."""
    run_dir.mkdir(parents=True)
    (run_dir / "done.json").write_text(json.dumps({"seconds": 1.0, "overrides": overrides}))
    rows = ["step,val/ppl,val/elbo,val/elbo_stderr"]
    rows += [f"{250 * (i + 1) - 1},{p},{math.log(p)},0.05" for i, p in enumerate(val_ppl)]
    (run_dir / "metrics.csv").write_text("\n".join(rows) + "\n")


def test_bench_likelihood_summarises_seeds_and_refuses_other_runs(tmp_path: Path) -> None:
    curves = {  # seed -> model -> val ppl at steps 250, 500, 750
        0: {"mdm": [400.0, 280.0, 196.0], "ar": [150.0, 300.0, 600.0]},
        1: {"mdm": [420.0, 290.0, 210.0], "ar": [140.0, 350.0, 700.0]},
    }
    for seed, models in curves.items():
        for model, ppl in models.items():
            extra = ["model=ar_tiny"] if model == "ar" else []
            overrides = ["experiment=infill", *extra, f"seed={seed}", "data.seed=0"]
            finished_run(tmp_path / "runs" / "infill" / f"seed{seed}" / model, overrides, ppl)
    command = [sys.executable, "scripts/bench_likelihood.py", "--seeds", "0", "1"]
    command += ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads((tmp_path / "out" / "bench_likelihood.json").read_text())
    expected = [196.0 / 150.0, 210.0 / 140.0]  # each seed's best MDM over its best AR
    assert [round(r, 6) for r in saved["best_ratio"]] == [round(r, 6) for r in expected]
    assert saved["seeds"][1]["ratios"][2] == 210.0 / 700.0
    assert "2 seeds" in (tmp_path / "out" / "bench_likelihood.md").read_text()
    # A run trained with other overrides is never read as this one.
    overrides_file = tmp_path / "runs" / "infill" / "seed1" / "ar" / "done.json"
    overrides_file.write_text(json.dumps({"seconds": 1.0, "overrides": ["model=ar_tiny"]}))
    refused = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "holds a run of other overrides" in refused.stderr
