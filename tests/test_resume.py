"""An interrupted run (SIGKILL) resumed from last.ckpt ends with the weights of an uninterrupted one."""

from __future__ import annotations

import json
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


def run_train(
    run_dir: Path, *extra: str, base: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """`llada.train` in a subprocess: on the small text corpus, or on `base` when given."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    corpus = run_dir.parent / "corpus.txt"
    if not base and not corpus.exists():
        small_corpus(corpus)
    setup = list(base) or [*STEPS, f"data.path={corpus}"]
    return subprocess.run(
        [sys.executable, "-m", "llada.train", *setup, "callbacks.periodic.every_n_train_steps=4",
         f"hydra.run.dir={run_dir}", *extra],
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


def check_resume(tmp_path: Path, variant: list[str], kill_step: int, base: tuple = ()) -> dict:
    """Run uninterrupted, then killed after a periodic checkpoint and resumed: same weights.

    Returns the crashed run's last periodic checkpoint (for variant-specific checks)."""
    reference = run_train(tmp_path / "reference", *variant, base=base)
    assert reference.returncode == 0, reference.stderr[-2000:]
    ending = torch.load(tmp_path / "reference" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ending["epoch"] >= 2  # several epochs after the one the crash happens in

    crashed = tmp_path / "crashed"
    killed = run_train(
        crashed,
        *variant,
        "+callbacks.kill._target_=probes.KillAtStep",
        f"+callbacks.kill.step={kill_step}",
        base=base,
    )
    assert killed.returncode == -9  # SIGKILL: no cleanup, no final checkpoint
    saved = torch.load(crashed / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 4 * ((kill_step - 1) // 4)
    assert saved["epoch"] < ending["epoch"] - 1  # at least two epoch boundaries still ahead

    resumed = run_train(crashed, *variant, "ckpt_path=last", base=base)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected, actual = final_weights(tmp_path / "reference"), final_weights(crashed)
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert (tensor - actual[name]).abs().max().item() <= 1e-6, name
    return saved


@pytest.mark.parametrize("name", list(VARIANTS))
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path, name: str) -> None:
    variant, kill_step = VARIANTS[name]
    saved = check_resume(tmp_path, variant, kill_step)
    if name == "bd3":
        assert saved["llada"]["objective_state"]["clip"] is not None  # chosen at step 5
    ema = any(key.startswith("ema/") for key in final_weights(tmp_path / "crashed"))
    assert ema == ("callbacks=ema" in variant)


# Post-training from a tiny Sudoku MDM: 2 steps an epoch (8 rows / 4), killed in epoch 2 after the
# step-4 checkpoint and ending in epoch 5. GRPO rolls out every 3 steps, so the checkpoint holds
# the rollouts of step 3 mid-use: the resumed run must finish them, not draw new ones.
TINY_NET = ["model.dim=32", "model.n_layers=1", "model.n_heads=2",
            "trainer.enable_progress_bar=false", "callbacks.samples.num_samples=0"]  # fmt: skip
POST = [*TINY_NET, "trainer.max_steps=12", "trainer.val_check_interval=5",
        "data.batch_size=4", "data.val_size=4", "data.block_size=20"]  # fmt: skip


@pytest.fixture(scope="module")
def sudoku_start(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("sudoku")
    result = run_train(run_dir, base=(*TINY_NET, "experiment=sudoku", "trainer.max_steps=6",
                                      "trainer.val_check_interval=6", "callbacks.task.limit=2"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir / "checkpoints" / "last.ckpt"


def test_grpo_resume_continues_its_rollouts_across_epochs(tmp_path: Path, sudoku_start) -> None:
    base = (*POST, "experiment=grpo_sudoku", f"model.init_from={sudoku_start}",
            "data.max_rows=8", "objective.group_size=2", "objective.inner_steps=3",
            "callbacks.task.limit=2")  # fmt: skip
    saved = check_resume(tmp_path, [], 6, base)
    assert saved["llada"]["objective_state"]["rollouts"]["started_at"] == 3


def test_vrpo_resume_matches_an_uninterrupted_run(tmp_path: Path, sudoku_start) -> None:
    pairs = [{"prompt": "1 2 3 4 / 3 4 1 2 / 2 1 4 3 /", "chosen": "4 3 2 1", "rejected": r}
             for r in ("4 3 1 2", "3 4 2 1", "1 2 3 4")]  # fmt: skip
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(pairs[i % 3]) + "\n" for i in range(12)))
    base = (*POST, "objective=vrpo", "data=preferences", f"data.path={data}",
            f"model.init_from={sudoku_start}")  # fmt: skip
    check_resume(tmp_path, [], 6, base)


def test_sft_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    """SFT rows (the shipped example: 13 train rows, batches of 4, the last one smaller)."""
    base = (*TINY_RUN, "trainer.max_steps=20", "trainer.val_check_interval=5", "data=sft_jsonl",
            "data.batch_size=4", "data.block_size=128", "data.vocab_size=256")  # fmt: skip
    check_resume(tmp_path, [], 6, base)
