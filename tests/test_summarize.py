"""scripts/summarize.py: a real multirun of experiment=remasking_sweep becomes one table and a plot;
hand-made job directories cover the eval.json / task_accuracy.json readers and the quality choice;
the Pareto front on hand-made points."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from conftest import REPO, TINY_RUN


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("summarize", REPO / "scripts" / "summarize.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


summarize = load_script()


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "summarize.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def assert_plot(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (700, 450)
        assert len(set(image.convert("L").getdata())) > 10  # drawn on, not a blank canvas


# --------------------------------------------------------------------------- a real multirun
@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """experiment=remasking_sweep cut to 2 strategies x 2 step counts of a TINY_RUN model."""
    sweep = tmp_path_factory.mktemp("sweep")
    command = [sys.executable, "-m", "llada.train", "-m", "experiment=remasking_sweep", *TINY_RUN]
    overrides = [
        "remasking=low_confidence,random",
        "sampler.steps=4,8",  # 8 tokens in 2 blocks: 2 or 1 token(s) per step, NFE = steps
        "callbacks.samples.num_samples=2",
        "trainer.log_every_n_steps=1",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the jobs' process: no thread contention
    proc = subprocess.run(
        [*command, *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


@pytest.mark.slow
def test_multirun_summary_has_one_row_per_job_with_its_results(sweep_dir: Path) -> None:
    proc = run_script(str(sweep_dir))
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(sweep_dir / "summary.csv")
    assert [(r["remasking"], r["sampler.steps"]) for r in rows] == [
        ("low_confidence", "4"), ("low_confidence", "8"), ("random", "4"), ("random", "8"),
    ]  # fmt: skip
    for row in rows:
        assert row["experiment"] == "remasking_sweep" and row["strategy"] == row["remasking"]
        assert float(row["nfe"]) == float(row["sampler.steps"])
        assert float(row["samples/n"]) == 2 and 0.0 <= float(row["samples/distinct_2"]) <= 1.0
        assert float(row["tokens_per_second"]) > 0
        for metric in ["val/ppl", "val/elbo", "val/elbo_stderr", "train/loss"]:
            assert math.isfinite(float(row[metric])), metric
        assert float(row["val/ppl"]) > 1.0
        assert float(row["train/tokens_seen"]) == 6 * 8 * 32  # TINY_RUN: 6 steps of 8 x 32


@pytest.mark.slow
def test_multirun_markdown_and_pareto_plot(sweep_dir: Path) -> None:
    proc = run_script(str(sweep_dir))
    assert proc.returncode == 0, proc.stderr
    markdown = (sweep_dir / "summary.md").read_text()
    assert markdown in proc.stdout
    lines = markdown.splitlines()
    assert lines[0].startswith("common overrides: `experiment=remasking_sweep`")
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + 4  # header, rule, one row per job
    assert "| remasking | sampler.steps |" in table[0] and "model.dim" not in table[0]
    assert "quality: distinct-2 of the samples" in proc.stdout
    assert_plot(sweep_dir / "pareto.png")


# ------------------------------------------------------------------- hand-made job directories
def make_job(
    root: Path, name: str, overrides: list[str], files: dict[str, str | dict | list[dict]]
) -> None:
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    for file, content in files.items():
        if isinstance(content, list):
            content = "".join(json.dumps(record) + "\n" for record in content)
        elif isinstance(content, dict):
            content = json.dumps(content)
        (job / file).write_text(content)


def eval_job_files(strategy: str, steps: int, gen_ppl: float) -> dict[str, str | dict | list]:
    samples = [{"text": f"word {i} and more words", "remasking": strategy, "nfe": steps,
                "tokens_per_second": 100.0 + i} for i in range(3)]  # fmt: skip
    return {
        "metrics.csv": "step,train/loss,val/ppl,val/elbo_stderr\n9,5.0,,\n9,,300.0,0.1\n19,4.5,,\n"
        "19,,250.0,0.05\n",
        "samples.jsonl": samples,
        "eval.json": {
            "settings": {"remasking": strategy, "steps": steps},
            "metrics": {"gen_ppl": gen_ppl, "nfe": steps},
        },
        "task_accuracy.json": {
            "accuracy": {"forward": 0.5, "reverse": 0.25},
            "n": {"forward": 4},
            "records": {"forward": [{"correct": True}]},
        },
    }


def test_result_files_of_every_kind_become_columns(tmp_path: Path) -> None:
    points = [("low_confidence", 8, 90.0), ("low_confidence", 32, 70.0), ("random", 8, 120.0)]
    for index, (strategy, steps, ppl) in enumerate(points):
        overrides = [f"remasking={strategy}", f"sampler.steps={steps}", "seed=1"]
        make_job(tmp_path, str(index), overrides, eval_job_files(strategy, steps, ppl))
    assert summarize.main([str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "summary.csv")
    assert [r["strategy"] for r in rows] == ["low_confidence", "low_confidence", "random"]
    first = rows[0]
    assert float(first["val/ppl"]) == 250.0 and float(first["train/loss"]) == 4.5  # the last ones
    assert float(first["val/elbo_stderr"]) == 0.05
    assert float(first["nfe"]) == 8 and float(first["tokens_per_second"]) == 101.0  # median
    assert float(first["eval/gen_ppl"]) == 90.0 and first["eval_settings/steps"] == "8"
    assert float(first["task/accuracy/reverse"]) == 0.25 and "task/records/forward" not in first
    assert float(first["samples/distinct_2"]) < 1.0  # "and more words" repeats across samples
    assert "`seed=1`" in (tmp_path / "summary.md").read_text()
    assert_plot(tmp_path / "pareto.png")


def test_quality_is_the_judge_then_distinct_2_when_sampling_varies_else_val_ppl() -> None:
    varied = [{"nfe": 8.0, "strategy": "a", "samples/distinct_2": 0.5, "val/ppl": 9.0},
              {"nfe": 16.0, "strategy": "a", "samples/distinct_2": 0.6, "val/ppl": 9.0}]  # fmt: skip
    same = [{**row, "nfe": 8.0} for row in varied]
    judged = [{**row, "eval/judge_gen_ppl": 30.0} for row in varied]
    choose = summarize.choose_quality
    assert choose(varied, None, None) == ("samples/distinct_2", summarize.DISTINCT_2)
    assert choose(same, None, None) == ("val/ppl", summarize.VAL_PPL)
    assert choose(judged, None, None) == ("eval/judge_gen_ppl", summarize.GEN_PPL)
    column, quality = choose(varied, "val/ppl", None)
    assert column == "val/ppl" and not quality.higher_is_better and "lower" in quality.label
    _, forced = choose(varied, "val/ppl", True)
    assert forced.higher_is_better
    with pytest.raises(KeyError, match="no job has a number"):
        choose(varied, "eval/bleu", None)


def test_pareto_front_on_hand_made_points() -> None:
    points = [(8, 0.5), (16, 0.7), (32, 0.6), (16, 0.4), (64, 0.9), (8, 0.5)]
    # Higher is better: (32, 0.6) loses to (16, 0.7), (16, 0.4) to (8, 0.5); ties both stay.
    assert summarize.pareto_front(points, higher_is_better=True) == [0, 5, 1, 4]
    # Lower is better: (16, 0.4) now wins its NFE; everything slower and worse drops out.
    assert summarize.pareto_front(points, higher_is_better=False) == [0, 5, 3]
    assert summarize.pareto_front([], higher_is_better=True) == []


def test_distinct_2_counts_unique_word_bigrams() -> None:
    assert summarize.distinct_2(["a b a b"]) == 2 / 3
    assert summarize.distinct_2(["a b", "a b"]) == 0.5
    assert math.isnan(summarize.distinct_2(["one"]))


@pytest.mark.parametrize("make", ["empty", "missing"])
def test_no_jobs_is_a_one_line_error_with_exit_code_2(tmp_path: Path, make: str) -> None:
    target = tmp_path if make == "empty" else tmp_path / "nope"
    (tmp_path / "not-a-job").mkdir()
    proc = run_script(str(target))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert ("no Hydra jobs under" if make == "empty" else "is not a directory") in lines[0]
