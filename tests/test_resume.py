"""An interrupted run (SIGKILL) resumed from last.ckpt ends with the weights of an uninterrupted one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY_RUN
from llada.ema import EMA_KEY

pytestmark = pytest.mark.slow

# A corpus of about 7 steps an epoch: the run is killed in epoch 0 and ends in epoch 2, so the
# resumed run must get every later epoch's order and length right, not only the rest of epoch 0.
STEPS = [*TINY_RUN, "trainer.max_steps=20", "trainer.val_check_interval=5", "data=text_files",
         "data.vocab_size=64", "data.val_fraction=0.1"]  # fmt: skip
WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "rug", "log", "box", "bed", "red",
         "blue", "big", "small", "fast", "slow", "and", "then"]  # fmt: skip


def small_corpus(path: Path) -> Path:
    rows = [" ".join(WORDS[(7 * i + 3 * j) % len(WORDS)] for j in range(20 + i % 20)) + " ."
            for i in range(90)]  # fmt: skip
    path.write_text("\n\n".join(rows))
    return path


def run_train(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    corpus = run_dir.parent / "corpus.txt"
    if not corpus.exists():
        small_corpus(corpus)
    return subprocess.run(
        [sys.executable, "-m", "llada.train", *STEPS, "callbacks.periodic.every_n_train_steps=4",
         f"data.path={corpus}", f"hydra.run.dir={run_dir}", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The weights and, when the run keeps one, the EMA of them."""
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    ema = {f"ema/{name}": value for name, value in checkpoint.get(EMA_KEY, {}).items()}
    return {**checkpoint["state_dict"], **ema}


# bd3 is killed after its step-8 checkpoint, which follows the step-5 validation that chose a
# clip range: the resumed run must train on that range, restored from the checkpoint.
BD3 = ["objective=bd3", "objective.block_size=8", "objective.clip_search=[[0,1],[0.45,0.95]]"]
VARIANTS = {"mdm": ([], 6), "ar+ema": (["model=ar_tiny", "callbacks=ema"], 6), "bd3": (BD3, 9)}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path, name: str) -> None:
    variant, kill_step = VARIANTS[name]
    reference = run_train(tmp_path / "reference", *variant)
    assert reference.returncode == 0, reference.stderr[-2000:]
    ending = torch.load(tmp_path / "reference" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ending["epoch"] >= 2  # several epochs after the one the crash happens in

    crashed = tmp_path / "crashed"
    killed = run_train(
        crashed,
        *variant,
        "+callbacks.kill._target_=probes.KillAtStep",
        f"+callbacks.kill.step={kill_step}",
    )
    assert killed.returncode == -9  # SIGKILL: no cleanup, no final checkpoint
    saved = torch.load(crashed / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 4 * ((kill_step - 1) // 4)
    if name == "bd3":
        assert saved["llada"]["objective_state"]["clip"] is not None  # chosen at step 5

    resumed = run_train(crashed, *variant, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected, actual = final_weights(tmp_path / "reference"), final_weights(crashed)
    assert expected.keys() == actual.keys()
    assert any(name.startswith("ema/") for name in expected) == ("callbacks=ema" in variant)
    for name, tensor in expected.items():
        assert (tensor - actual[name]).abs().max().item() <= 1e-6, name
