"""Results do not depend on what else is in the batch: padding is never filled nor attended."""

from __future__ import annotations

import pytest
import torch

from llada.data.tokenizer import train_tokenizer
from llada.diffusion.next_token import NextToken
from llada.models.native import NativeTransformer
from llada.module import DiffusionLM

TEXTS = ["the cat sat on the mat", "a dog lay on the rug", "the owl flew over the log"]


@pytest.fixture(scope="module", params=[False, True], ids=["mdm", "ar"])
def unpadded_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A model whose tokenizer has no pad token (as GPT-2-style ones): batches pad with [MASK]."""
    tokenizer = train_tokenizer(TEXTS * 20, 80, "wordpiece", tmp_path_factory.mktemp("tok"))
    tokenizer.pad_token = None
    assert tokenizer.pad_token_id is None
    torch.manual_seed(0)
    causal = request.param
    backbone = NativeTransformer(
        len(tokenizer), dim=32, n_layers=2, n_heads=2, max_len=32, causal=causal
    )
    return DiffusionLM(backbone, tokenizer, objective=NextToken if causal else None).eval()


def test_infill_alone_equals_infill_in_a_batch(unpadded_model: DiffusionLM) -> None:
    short = "the [MASK]x2 sat"
    long = "a dog lay on the rug and the [MASK]x3 flew over the log"
    alone = unpadded_model.infill_with_info(short, sampler="greedy", steps=2)
    batched = unpadded_model.infill_with_info([long, short], sampler="greedy", steps=3)
    assert batched.texts[1] == alone.texts[0]
    width = alone.tokens.shape[1]
    assert torch.equal(batched.tokens[1, -width:], alone.tokens[0])
    padding = batched.tokens[1, :-width]  # left padding of the short row: never filled
    assert bool((padding == unpadded_model.mask_id).all())


def test_greedy_generation_alone_equals_generation_in_a_batch(unpadded_model: DiffusionLM) -> None:
    alone = unpadded_model.generate_with_info("the cat", 6, sampler="greedy", steps=6)
    batched = unpadded_model.generate_with_info(
        ["a dog lay on the rug", "the cat"], 6, sampler="greedy", steps=6
    )
    assert torch.equal(batched.tokens[1], alone.tokens[0])


def test_log_likelihood_alone_equals_in_a_batch(unpadded_model: DiffusionLM) -> None:
    prompts, answers = ["the cat", "a dog lay on the"], ["sat on", "rug"]
    together = unpadded_model.log_likelihood(prompts, answers, mc_samples=16, seed=3)
    alone = unpadded_model.log_likelihood(prompts[1], answers[1], mc_samples=16, seed=3)
    # AR: one batch of right-padded rows; MDM: every pair draws afresh from the seed.
    torch.testing.assert_close(together[1], alone[0], atol=1e-4, rtol=1e-5)
