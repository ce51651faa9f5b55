"""scripts/reproduce.py and its rows (scripts/reproduction/) without training: row registry,
verdicts, md + plot writing, --only."""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reproduce() -> SimpleNamespace:
    """The entry script and its rows' package as one namespace (scripts/ is not a package; the
    entry and its helpers import `reproduction` and `runs` from it)."""
    sys.path.insert(0, str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location("reproduce", REPO / "scripts" / "reproduce.py")
    assert spec and spec.loader
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    benchmarks = importlib.import_module("reproduction.benchmarks")
    common = importlib.import_module("reproduction.common")
    report = importlib.import_module("reproduction.report")
    rows = importlib.import_module("reproduction.rows")
    return SimpleNamespace(
        main=entry.main, parse_args=entry.parse_args, ROWS=rows.ROWS, VERDICTS=common.VERDICTS,
        Context=common.Context, write_report=report.write_report,
        BENCHMARKS=benchmarks.BENCHMARKS, run_benchmarks=benchmarks.run_benchmarks,
        judge_benchmarks=benchmarks.judge_benchmarks,
    )  # fmt: skip


def curve(ppls: list[float]) -> list[dict[str, float]]:
    return [
        {"step": 25 * (i + 1), "val_ppl": p, "val_nll": 0.0, "val_nll_stderr": 0.01}
        for i, p in enumerate(ppls)
    ]


HAND_MADE = {
    "data-constrained": {
        "curves": {
            "MDM": [curve([600, 400, 300, 250]), curve([620, 410, 310, 255])],
            "AR": [curve([300, 200, 260, 400]), curve([310, 210, 270, 420])],
        },
        "epochs": 8.0,
        "steps": 100,
    },
    "planning": {
        "scores": {
            "sudoku": {"MDM": [0.9, 0.85], "AR": [0.07, 0.1]},
            "countdown": {"MDM": [0.5, 0.55], "AR": [0.45, 0.6]},
        },
        "orders": {"random": [0.3, 0.2], "low_confidence": [0.9, 0.85], "margin": [0.88, 0.8]},
        "steps": {"sudoku": 1000, "countdown": 600},
    },
    "reversal": {
        "scores": {
            "MDM": {"forward": [1.0], "reverse": [0.0], "reverse_infill": [0.5]},
            "AR": {"forward": [1.0], "reverse": [0.0], "reverse_infill": [0.0]},
        },
        "steps": 1500,
    },
}


def test_rows_judge_and_write(reproduce: SimpleNamespace, tmp_path: Path) -> None:
    """Every trained row judges hand-made results; the md, json and plots are written."""
    assert set(HAND_MADE) | {"benchmarks"} == set(reproduce.ROWS)
    rows = {}
    for name, data in HAND_MADE.items():
        claims = reproduce.ROWS[name].judge(data)
        assert claims and all(c["verdict"] in reproduce.VERDICTS for c in claims)
        runs = [{"kind": "sudoku", "model": "MDM", "seed": 0, "steps": 100, "seconds": 20.0}]
        rows[name] = {"title": name, "mode": "quick", "when": "today", "seconds": 1.0,
                      "full_estimate": 60.0, "claims": claims, "data": data, "runs": runs}  # fmt: skip
    verdicts = {c["claim"].split(":")[0]: c["verdict"] for r in rows.values() for c in r["claims"]}
    assert verdicts["Sudoku"] == "holds" and verdicts["Countdown"] == "inconclusive"
    assert verdicts["Reversal"] == "holds"
    report = {"command": "python scripts/reproduce.py --quick", "seconds": 2.0, "full_estimate": 180.0,
              "machine": {"cpu": "Test CPU", "isa": ["avx2"], "threads": 2}, "rows": rows}  # fmt: skip
    md = reproduce.write_report(report, tmp_path).read_text()
    assert "Test CPU (avx2" in md and "vary by machine" in md and "**quick**" in md
    for name in HAND_MADE:
        png = tmp_path / f"reproduce_{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
        assert f"]({png.name})" in md
    assert json.loads((tmp_path / "reproduce.json").read_text())["rows"].keys() == rows.keys()
    assert "is estimated at 3 min" in md  # quick rows: the full plan from seconds per step
    for row in rows.values():
        row["mode"] = "full"
    md = reproduce.write_report(report, tmp_path).read_text()
    assert "The full plan's runs took 1 min of training" in md and "estimated" not in md
    assert "done before and reused" in md  # runs that do not say: training beyond the row's time
    for row in rows.values():
        row["runs"][0]["reused"] = False  # runs that say they were trained by the row itself
    assert "reused" not in reproduce.write_report(report, tmp_path).read_text()


def test_benchmarks_row_reads_jsons_or_says_not_measured(
    reproduce: SimpleNamespace, tmp_path: Path
) -> None:
    """Committed JSONs go through their adapters; absent or odd ones never fail the row."""
    (tmp_path / "bench_grpo.json").write_text(json.dumps({
        "machine": {"cpu": "X", "isa": ["avx2"]}, "start_steps": 600, "seconds": 150,
        "start": {"accuracy": 0.3, "n": 58, "step": 600},
        "runs": {"GRPO": [{"accuracy": 0.5}, {"accuracy": 0.55}],
                 "SFT (same rows)": [{"accuracy": 0.35}, {"accuracy": 0.4}]},
    }))  # fmt: skip
    (tmp_path / "bench_vrpo.json").write_text(json.dumps({"unexpected": 1}))
    (tmp_path / "bench_adaptation.json").write_text(json.dumps({"results": []}))
    ctx = reproduce.Context(mode="quick", runs=tmp_path, row="benchmarks", total=5)
    found = reproduce.judge_benchmarks(reproduce.run_benchmarks(ctx, results_dir=tmp_path))
    rows = dict(zip(reproduce.BENCHMARKS, found, strict=True))
    assert rows["bench_grpo"]["verdict"] == "holds"
    assert rows["bench_block_size"]["verdict"] == "not yet measured"
    assert "could not read" in rows["bench_adaptation"]["measured"]
    assert rows["bench_vrpo"]["verdict"] in reproduce.VERDICTS
    committed = reproduce.judge_benchmarks(reproduce.run_benchmarks(ctx))  # scripts/results
    assert committed[0]["claim"].startswith("Block diffusion")
    assert committed[0]["verdict"] == "holds"
    unread = [c["claim"] for c in committed if c["verdict"] == "not yet measured"]
    assert not unread, f"a committed benchmark JSON no longer fits its adapter: {unread}"


def test_report_only_rewrites_the_committed_report(
    reproduce: SimpleNamespace, tmp_path: Path
) -> None:
    """The entry re-judges the committed reproduce.json into md + plots without training."""
    shutil.copy(REPO / "scripts" / "results" / "reproduce.json", tmp_path / "reproduce.json")
    reproduce.main(["--report-only", "--out", str(tmp_path)])
    md = (tmp_path / "REPRODUCE.md").read_text()
    assert md.startswith("# Reproducing the field's results") and "**holds**" in md
    assert sorted(p.name for p in tmp_path.glob("reproduce_*.png"))


def test_only_rejects_an_unknown_row(
    reproduce: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--only nope` exits with one error line that lists the allowed rows."""
    assert reproduce.parse_args(["--only", "reversal", "--quick"]).only == "reversal"
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--only", "nope"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "invalid choice: 'nope'" in error
    assert all(name in error for name in reproduce.ROWS)
