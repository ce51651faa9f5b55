"""DiffusionLM wiring: the SFT path and a trained model's likelihood ranking."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import TINY_RUN, compose_config
from llada.data.tokenizer import train_tokenizer
from llada.diffusion.schedules import LinearSchedule
from llada.diffusion.sft import sft_loss
from llada.models.native import NativeTransformer
from llada.module import DiffusionLM
from llada.train import train

ANIMALS = ["cat", "dog", "fox", "owl", "bee", "cow"]
PLACES = ["mat", "rug", "bed", "box", "hat", "log"]


def test_sft_batch_uses_the_sft_loss(tmp_path: Path) -> None:
    tokenizer = train_tokenizer(["the cat sat on the mat"] * 20, 60, "wordpiece", tmp_path)
    torch.manual_seed(0)
    backbone = NativeTransformer(len(tokenizer), dim=32, n_layers=1, n_heads=2, max_len=16)
    model = DiffusionLM(backbone, tokenizer, LinearSchedule(), loss_buckets=0)
    ids = torch.randint(5, len(tokenizer), (4, 10))
    prompt_mask = torch.zeros(4, 10, dtype=torch.bool)
    prompt_mask[:, :4] = True
    batch = {"input_ids": ids, "prompt_mask": prompt_mask, "attention_mask": torch.ones_like(ids)}
    torch.manual_seed(1)
    via_module = model.training_step(batch, 0)
    torch.manual_seed(1)
    direct = sft_loss(
        model,
        ids,
        prompt_mask,
        model.mask_id,
        model.schedule,
        attention_mask=batch["attention_mask"],
        antithetic=True,
    )
    torch.testing.assert_close(via_module, direct)


@pytest.mark.slow
def test_trained_model_ranks_true_continuation_above_shuffled(tmp_path: Path) -> None:
    """Train on "the <animal> sat on the <place> ." facts; the learned order must score higher."""
    lines = [f"the {a} sat on the {p} ." for a in ANIMALS for p in PLACES]
    (tmp_path / "facts.txt").write_text("\n\n".join(lines * 8))
    cfg = compose_config(
        "train",
        overrides=[
            *TINY_RUN, "data=text_files", f"data.path={tmp_path / 'facts.txt'}",
            "data.vocab_size=64", "data.block_size=16", "data.val_fraction=0.1",
            "model.dim=64", "model.n_layers=2", "trainer.max_steps=150",
            "trainer.val_check_interval=150", "optim.optimizer.lr=3e-3",
            f"run_dir={tmp_path / 'run'}",
        ],
    )  # fmt: skip
    model = train(cfg)["model"].eval()
    true = model.log_likelihood(["the cat"] * 3, ["sat on the mat ."] * 3, mc_samples=32, seed=0)
    shuffled = model.log_likelihood(
        ["the cat"] * 3, ["mat the on sat .", ". sat mat on the", "on . the mat sat"], mc_samples=32
    )
    assert bool((true > shuffled).all()), (true, shuffled)


@pytest.mark.slow
def test_masking_sweep_runs_six_jobs_with_stderr_and_t_buckets(tmp_path: Path) -> None:
    from conftest import run_cli

    run_cli(
        "llada.train",
        "-m",
        "masking=linear,cosine,power",
        "masking.t_min=0.0,0.3",
        *TINY_RUN,
        "trainer.max_steps=2",
        f"hydra.sweep.dir={tmp_path}",
    )
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(jobs) == 6
    for job in jobs:
        header = (job / "metrics.csv").read_text().splitlines()[0].split(",")
        assert {"val/ppl", "val/elbo_stderr"} <= set(header)
        assert any(name.startswith("train_loss_by_t/") for name in header)
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        assert "masking=" in overrides
