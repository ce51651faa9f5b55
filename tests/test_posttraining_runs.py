"""GRPO and VRPO through the real `llada.train` entry, from a tiny trained Sudoku MDM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import compose_config
from llada.module import DiffusionLM
from llada.train import train

# A 1-layer Sudoku MDM trained for a few steps: the start of every post-training run here.
SMALL = [
    "model.dim=32",
    "model.n_layers=1",
    "model.n_heads=2",
    "trainer.enable_progress_bar=false",
    "callbacks.samples.num_samples=1",
    "callbacks.samples.prompts=[]",
]
POST = [
    *SMALL,
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
]


@pytest.fixture(scope="module")
def sudoku_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("sudoku")
    overrides = [*SMALL, "experiment=sudoku", "trainer.max_steps=6", "trainer.val_check_interval=3",
                 "callbacks.task.limit=4", f"run_dir={run_dir}"]  # fmt: skip
    train(compose_config("train", overrides))
    return run_dir / "checkpoints" / "last.ckpt"


def preferences(path: Path, rows: int = 24) -> Path:
    pairs = [
        {"prompt": "1 2 3 4 / 3 4 1 2 / 2 1 4 3 /", "chosen": "4 3 2 1", "rejected": "4 3 1 2"},
        {"prompt": "1 2 4 3 / 4 3 1 2 / 2 1 3 4 /", "chosen": "3 4 2 1", "rejected": "3 4 1 2"},
    ]
    path.write_text("".join(json.dumps(pairs[i % 2]) + "\n" for i in range(rows)))
    return path


@pytest.mark.slow
def test_grpo_run_logs_rewards_and_writes_an_mdm_checkpoint(
    sudoku_ckpt: Path, tmp_path: Path
) -> None:
    overrides = [*POST, "experiment=grpo_sudoku", f"model.init_from={sudoku_ckpt}",
                 "objective.group_size=2", "data.batch_size=2", "callbacks.task.limit=4",
                 f"run_dir={tmp_path}"]  # fmt: skip
    result = train(compose_config("train", overrides))
    metrics = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("train/reward", "train/kl", "train/accuracy", "train/completion_length"):
        assert name in metrics, name
    assert result["metrics"]["val/ppl"] > 1.0
    reloaded = DiffusionLM.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert reloaded.lm_kind == "diffusion"
    assert type(reloaded.objective).__name__ == "MaskedDiffusion"
    assert json.loads((tmp_path / "task_accuracy.json").read_text())["n"]["infill"] == 4


@pytest.mark.slow
def test_vrpo_run_starts_at_log_2_and_logs_preference_accuracy(
    sudoku_ckpt: Path, tmp_path: Path
) -> None:
    data = preferences(tmp_path / "prefs.jsonl")
    overrides = [*POST, "objective=vrpo", "data=preferences", f"data.path={data}",
                 "data.block_size=20", f"model.init_from={sudoku_ckpt}",
                 f"run_dir={tmp_path / 'run'}"]  # fmt: skip
    train(compose_config("train", overrides))
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    losses = [row.split(",")[header.index("train/loss")] for row in lines[1:]]
    first = float(next(value for value in losses if value))
    # Step 0: the policy is the reference and the draws are shared, so the margin is exactly 0.
    assert first == pytest.approx(0.6931, abs=1e-3)
    assert "train/preference_accuracy" in header


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-init-from", "post-trains a model: set model.init_from"),
        ("missing-rejected", "has no string 'rejected'"),
        ("reference-vocabulary", "another vocabulary"),
        ("group-size", "objective.group_size=1 is out of range"),
        ("unknown-reward", "objective.reward._target_=llada.data.rewards.nope does not exist"),
    ],
)
@pytest.mark.slow
def test_bad_post_training_input_fails_in_one_line(
    sudoku_ckpt: Path, tmp_path: Path, case: str, message: str
) -> None:
    grpo = ["experiment=grpo_sudoku", f"model.init_from={sudoku_ckpt}"]
    overrides = {
        "no-init-from": ["experiment=grpo_sudoku"],
        "group-size": [*grpo, "objective.group_size=1"],
        "unknown-reward": [*grpo, "objective.reward._target_=llada.data.rewards.nope"],
    }.get(case, [])
    if case == "missing-rejected":
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"prompt": "1 2", "chosen": "3 4"}) + "\n")
        overrides = ["objective=vrpo", "data=preferences", f"data.path={bad}",
                     f"model.init_from={sudoku_ckpt}"]  # fmt: skip
    if case == "reference-vocabulary":  # a reference trained with another tokenizer
        other = tmp_path / "other"
        train(compose_config("train", [*SMALL, "trainer.max_steps=1", "data.vocab_size=300",
                                        "data.block_size=20", f"run_dir={other}"]))  # fmt: skip
        overrides = [*grpo, f"objective.reference={other / 'checkpoints' / 'last.ckpt'}"]
    with pytest.raises(ValueError, match=message) as info:
        train(compose_config("train", [*POST, *overrides, f"run_dir={tmp_path / 'run'}"]))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()  # failed before any work
