"""Checkpoints written before objectives (format 1) load and behave exactly as they did."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llada import DiffusionLM
from llada.checkpoint_format import FORMAT
from llada.diffusion.mdm import MaskedDiffusion
from llada.diffusion.next_token import NextToken

FIXTURES = Path(__file__).parent / "fixtures"
OBJECTIVES = {"mdm": MaskedDiffusion, "ar": NextToken}


@pytest.mark.parametrize("kind", OBJECTIVES)
def test_format_1_checkpoint_loads_and_generates_as_before(kind: str) -> None:
    """Logits, greedy tokens and the likelihood are those the format-1 code produced."""
    meta = torch.load(FIXTURES / f"format1_{kind}.ckpt", weights_only=True)["llada"]
    assert meta["format"] == 1 and "objective" not in meta  # really the old layout
    expected = torch.load(FIXTURES / f"format1_{kind}_expected.pt", weights_only=True)
    model = DiffusionLM.load_from_checkpoint(FIXTURES / f"format1_{kind}.ckpt")
    assert type(model.objective) is OBJECTIVES[kind]
    with torch.no_grad():
        logits = model(expected["input_ids"])
    torch.testing.assert_close(logits, expected["logits"], atol=1e-4, rtol=1e-4)
    out = model.generate_with_info(
        ["The return statement", "A class"], 8, sampler="greedy", steps=8, seed=0
    )
    assert torch.equal(out.tokens, expected["greedy_tokens"])
    assert out.texts == expected["texts"]
    value = model.log_likelihood("The return statement", "is used", mc_samples=8, seed=0)
    assert float(value[0]) == pytest.approx(expected["log_likelihood"], rel=1e-4)


@pytest.mark.parametrize("kind", OBJECTIVES)
def test_resaved_checkpoint_is_format_2_with_an_objective_recipe(kind: str, tmp_path: Path) -> None:
    """Saving a loaded format-1 model writes the objective recipe; the reload is the same model."""
    import lightning as L

    model = DiffusionLM.load_from_checkpoint(FIXTURES / f"format1_{kind}.ckpt")
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    path = tmp_path / "resaved.ckpt"
    trainer.save_checkpoint(path)
    meta = torch.load(path, weights_only=True)["llada"]
    assert meta["format"] == FORMAT == 2
    assert meta["objective"]["_target_"].endswith(OBJECTIVES[kind].__qualname__)
    reloaded = DiffusionLM.load_from_checkpoint(path)
    ids = torch.load(FIXTURES / f"format1_{kind}_expected.pt", weights_only=True)["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids), model(ids))
