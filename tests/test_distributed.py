"""Data parallel training through Lightning's DDP strategy, two CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY_RUN

pytestmark = pytest.mark.slow


def test_ddp_two_cpu_processes_split_data_and_agree_on_weights(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    proc = subprocess.run(
        [
            sys.executable, "-m", "llada.train", "trainer=ddp", "trainer.accelerator=cpu",
            "trainer.devices=2", "trainer.precision=32-true", *TINY_RUN,
            "trainer.max_steps=4", "trainer.val_check_interval=4",
            "+callbacks.probe._target_=probes.RecordRankData", f"+callbacks.probe.out_dir={probe}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) == 4
    assert not set(ranks[0]["batches"]) & set(ranks[1]["batches"])  # each rank its own shard
    assert ranks[0]["weights"] == ranks[1]["weights"]  # gradients were all-reduced
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
