"""Sweep experiments expand to the jobs they promise; plugin sweeper/launcher configs compose; the
debug group's options run.

Sweep expansion is checked as Hydra's basic sweeper does it (its own `split_arguments`) on the
composed `hydra.sweeper.params`, then every expanded job is composed and its schedule or sampler
settings built, so a sweep cannot fail halfway through.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig

from conftest import REPO, TINY_RUN, compose_config
from llada.diffusion.remasking import make_remasking
from llada.generation import GenerationSettings
from llada.train import train


def compose_train(*overrides: str) -> DictConfig:
    return compose_config("train", overrides=overrides, return_hydra_config=True)


def expand(experiment: str, *command_line: str) -> list[dict[str, str]]:
    """The jobs `python -m llada.train -m experiment=<experiment> <command_line>` would launch."""
    cfg = compose_train(f"experiment={experiment}")
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    overrides = OverridesParser.create().parse_overrides([*params, *command_line])
    (batch,) = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    return [dict(item.split("=", 1) for item in job) for job in batch]


def test_remasking_sweep_declares_strategies_times_steps() -> None:
    jobs = expand("remasking_sweep")
    strategies = ["low_confidence", "random", "margin", "threshold"]
    assert [(j["remasking"], j["sampler.steps"]) for j in jobs] == [
        (s, steps) for s in strategies for steps in ("8", "32")
    ]
    for job in jobs:
        cfg = compose_train("experiment=remasking_sweep", *(f"{k}={v}" for k, v in job.items()))
        settings = GenerationSettings.from_groups(cfg.sampler, cfg.remasking).as_dict()
        assert settings["remasking"] == job["remasking"]
        assert settings["steps"] == int(job["sampler.steps"]) and settings["n_tokens"] == 32
        make_remasking(settings["remasking"], **settings["remasking_options"])
        assert cfg.callbacks.samples.num_samples == 8


def test_mask_schedule_sweep_declares_schedules_times_t_range() -> None:
    jobs = expand("mask_schedule_sweep")
    assert len(jobs) == 8
    assert {j["masking"] for j in jobs} == {"linear", "cosine"}
    assert {(j["masking.t_min"], j["masking.t_max"]) for j in jobs} == {
        ("0.0", "1.0"), ("0.0", "0.8"), ("0.2", "1.0"), ("0.2", "0.8"),
    }  # fmt: skip
    for job in jobs:
        cfg = compose_train("experiment=mask_schedule_sweep", *(f"{k}={v}" for k, v in job.items()))
        schedule = instantiate(cfg.masking)
        assert type(schedule).__name__.lower().startswith(job["masking"])
        assert (schedule.t_min, schedule.t_max) == (float(job["masking.t_min"]), float(job["masking.t_max"]))  # fmt: skip


def test_command_line_sweep_replaces_or_extends_the_experiments() -> None:
    replaced = expand("remasking_sweep", "remasking=random,entropy")
    assert {j["remasking"] for j in replaced} == {"random", "entropy"} and len(replaced) == 4
    extended = expand("remasking_sweep", "sampler=greedy,multinomial")
    assert len(extended) == 16


@pytest.mark.parametrize("experiment", ["quick", "remasking_sweep", "mask_schedule_sweep"])
def test_sweep_experiments_use_the_quick_model(experiment: str) -> None:
    cfg = compose_train(f"experiment={experiment}")
    assert (cfg.model.dim, cfg.model.n_layers, cfg.trainer.max_steps) == (96, 2, 200)
    assert cfg.data.block_size == 64 and cfg.sampler.n_tokens == 32


def test_experiment_names_its_output_directory() -> None:
    assert compose_train("experiment=remasking_sweep").name == "remasking_sweep"


def test_distilbert_finetune_still_composes() -> None:
    cfg = compose_train("experiment=distilbert_finetune")
    assert cfg.model._target_ == "llada.models.hf.distilbert"
    assert cfg.optim.optimizer.lr == 5.0e-5


def test_optuna_sweeper_config_composes() -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = compose_train("hydra/sweeper=optuna_lr", "experiment=quick")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "minimize"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.seed == cfg.seed and sweeper.n_trials == 20
    assert set(sweeper.params) == {
        "optim.optimizer.lr", "optim.weight_decay", "optim.scheduler.warmup_steps",
    }  # fmt: skip
    # Every search dimension parses as a sweep the optuna sweeper understands.
    parsed = OverridesParser.create().parse_overrides(
        [f"{k}={v}" for k, v in sweeper.params.items()]
    )
    assert all(override.is_sweep_override() for override in parsed)


@pytest.mark.slow
def test_optuna_sweep_of_two_tiny_trials_reports_the_best(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    command = [sys.executable, "-m", "llada.train", "-m", "hydra/sweeper=optuna_lr"]
    overrides = [*TINY_RUN, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # jobs in a process each: no thread contention
    proc = subprocess.run(
        [*command, *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert math.isfinite(results["best_value"]) and results["best_value"] > 1.0
    assert 3e-4 <= results["best_params"]["optim.optimizer.lr"] <= 1e-2
    assert sorted(p.parent.name for p in tmp_path.glob("*/metrics.csv")) == ["0", "1"]


def test_slurm_launcher_config_composes() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_train("hydra/launcher=slurm", "experiment=remasking_sweep")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (1, 1, 1)
    assert launcher.timeout_min == 240 and launcher.max_num_timeout == 0
    assert launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"


# ----------------------------------------------------------------- debug group: real runs, seconds
# The model and data of TINY_RUN, but the debug option's own trainer settings.
TINY_MODEL = [o for o in TINY_RUN if not o.startswith("trainer.")] + [
    "trainer.enable_progress_bar=false"
]


def debug_run(tmp_path: Path, option: str, *overrides: str) -> dict:
    cfg = compose_config(
        "train", overrides=[*TINY_MODEL, f"debug={option}", f"run_dir={tmp_path}", *overrides]
    )
    return train(cfg)


def logged(run_dir: Path, column: str) -> list[float]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return [float(row[column]) for row in csv.DictReader(handle) if row.get(column)]


@pytest.mark.slow
def test_debug_fast_dev_run_goes_through_once_without_checkpoints(tmp_path: Path) -> None:
    result = debug_run(tmp_path, "fast_dev_run")
    assert result["trainer"].global_step == 1
    assert "val/ppl" in result["metrics"]
    assert not (tmp_path / "checkpoints").exists()
    assert (tmp_path / "samples.jsonl").read_text().strip()


@pytest.mark.slow
def test_debug_limit_runs_twenty_steps_validating_twice(tmp_path: Path) -> None:
    result = debug_run(tmp_path, "limit")
    assert result["trainer"].global_step == 20
    assert len(logged(tmp_path, "val/ppl")) == 2
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_debug_overfit_one_batch_drives_its_loss_down(tmp_path: Path) -> None:
    debug_run(
        tmp_path, "overfit", "model.dim=64", "model.n_layers=2", "trainer.log_every_n_steps=1"
    )
    losses = logged(tmp_path, "train/loss")
    assert len(losses) == 200
    # One batch, seen 200 times: it is memorised (noisy per step: t is drawn anew each time).
    assert statistics.fmean(losses[-20:]) < 0.8 * statistics.fmean(losses[:20])
