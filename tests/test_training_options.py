"""Trainer options: EMA, bf16-mixed on CPU, global batch size -> gradient accumulation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from conftest import TINY_RUN, compose_config
from llada.ema import EMA_KEY
from llada.module import DiffusionLM
from llada.train import train

pytestmark = pytest.mark.slow


def run(tmp_path: Path, *overrides: str) -> dict:
    cfg = compose_config("train", overrides=[*TINY_RUN, f"run_dir={tmp_path}", *overrides])
    return train(cfg)


def test_ema_trains_samples_and_is_loaded_by_default(tmp_path: Path) -> None:
    result = run(tmp_path, "callbacks=ema", "callbacks.ema.decay=0.5", "trainer.max_steps=4")
    path = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    live, averaged = checkpoint["state_dict"], checkpoint[EMA_KEY]
    name = "backbone.embed.weight"
    assert not torch.equal(live[name], averaged[name])  # the average lags the live weights
    torch.testing.assert_close(result["model"].state_dict()[name], live[name])
    with_ema = DiffusionLM.load_from_checkpoint(path)
    without = DiffusionLM.load_from_checkpoint(path, use_ema=False)
    torch.testing.assert_close(with_ema.state_dict()[name], averaged[name])
    torch.testing.assert_close(without.state_dict()[name], live[name])
    assert (tmp_path / "samples.jsonl").read_text().strip()


def test_bf16_mixed_runs_on_cpu(tmp_path: Path) -> None:
    result = run(tmp_path, "trainer.precision=bf16-mixed", "trainer.max_steps=2")
    assert result["trainer"].precision == "bf16-mixed"
    assert torch.isfinite(torch.tensor(result["metrics"]["train/loss"]))


def test_auto_precision_trains_at_what_this_machine_supports(tmp_path: Path) -> None:
    from llada.precision import resolve_precision

    result = run(tmp_path, "trainer.precision=auto", "trainer.max_steps=2")
    assert result["trainer"].precision == resolve_precision("auto", "cpu")
    assert torch.isfinite(torch.tensor(result["metrics"]["train/loss"]))


def test_global_batch_size_sets_accumulation(tmp_path: Path) -> None:
    result = run(tmp_path, "global_batch_size=32", "trainer.max_steps=2")  # batch 8 -> 4 x 8
    assert result["trainer"].accumulate_grad_batches == 4
    assert result["model"].tokens_seen == 2 * 32 * 32  # 2 steps x 32 sequences x 32 tokens
    with pytest.raises(ValueError, match=r"not a multiple of data\.batch_size"):
        run(tmp_path / "bad", "global_batch_size=12")


def test_wandb_offline_run_gets_samples_table_and_animation(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_config(
        "train",
        overrides=[*TINY_RUN, f"run_dir={tmp_path}", "logger=wandb", "trainer.max_steps=2"],
        return_hydra_config=True,
    )
    HydraConfig.instance().set_config(cfg)  # the wandb run name comes from hydra's job overrides
    with open_dict(cfg):
        del cfg.hydra  # as in a real run: the job's config does not carry hydra's own
    train(cfg)
    assert (tmp_path / "denoising.gif").is_file()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = [p.name for p in (runs[0] / "files" / "media").rglob("*") if p.is_file()]
    assert any(name.endswith(".table.json") for name in media), media
    assert any(name.endswith(".gif") for name in media), media


def test_nonfinite_loss_skip_policy_keeps_training(tmp_path: Path) -> None:
    result = run(
        tmp_path, "optim.optimizer.lr=1e30", "module.nonfinite_loss=skip", "trainer.max_steps=4"
    )
    assert result["metrics"]["train/skipped_nonfinite"] >= 1
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_compile_switch_compiles_the_backbone_in_place(tmp_path: Path) -> None:
    """`module.compile_backbone`: compiled for fit only, parameter names (checkpoints) unchanged.

    Compilation itself is lazy (it happens at the first forward, 25-39 s here), so this checks
    the wiring; the speed is measured in scripts/results/BENCHMARKS.md.
    """
    from llada.data.tokenizer import train_tokenizer
    from llada.models.native import NativeTransformer

    tokenizer = train_tokenizer(["a b c d e f g"] * 10, 40, "wordpiece", tmp_path)
    backbone = NativeTransformer(len(tokenizer), dim=16, n_layers=1, n_heads=2, max_len=8)
    model = DiffusionLM(backbone, tokenizer, compile_backbone=True)
    names = list(model.state_dict())
    model.setup("validate")
    assert backbone._compiled_call_impl is None
    model.setup("fit")
    assert backbone._compiled_call_impl is not None
    assert list(model.state_dict()) == names
