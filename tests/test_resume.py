"""An interrupted run (SIGKILL) resumed from last.ckpt ends with the weights of an uninterrupted one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY_RUN

pytestmark = pytest.mark.slow

STEPS = [*TINY_RUN, "trainer.max_steps=12", "trainer.val_check_interval=5"]


def run_train(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    return subprocess.run(
        [sys.executable, "-m", "llada.train", *STEPS, "callbacks.periodic.every_n_train_steps=4",
         f"hydra.run.dir={run_dir}", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    reference = run_train(tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-2000:]

    crashed = tmp_path / "crashed"
    killed = run_train(
        crashed, "+callbacks.kill._target_=probes.KillAtStep", "+callbacks.kill.step=6"
    )
    assert killed.returncode == -9  # SIGKILL: no cleanup, no final checkpoint
    saved_step = torch.load(crashed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert saved_step == 4

    resumed = run_train(crashed, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected, actual = final_weights(tmp_path / "reference"), final_weights(crashed)
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert (tensor - actual[name]).abs().max().item() <= 1e-6, name
