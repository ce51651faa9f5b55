"""Results do not depend on what else is in the batch: padding is never filled nor attended."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from llada.data.tokenizer import train_tokenizer
from llada.diffusion.block_diffusion import BlockDiffusion
from llada.diffusion.next_token import NextToken
from llada.models.native import NativeTransformer
from llada.module import DiffusionLM

TEXTS = ["the cat sat on the mat", "a dog lay on the rug", "the owl flew over the log"]
# Eight prompts of mixed lengths: alone, in chunks of 3 and all together must agree.
PROMPTS = ["the cat", "a dog lay on the rug", "the", "owl flew over", "the cat sat on the mat",
           "a", "the log", "dog lay on the"]  # fmt: skip
BATCH_SIZES = (1, 3, 8)


def in_batches(run, items: list, size: int) -> list:
    """run(chunk) for chunks of `size`, results concatenated row-wise."""
    return [row for first in range(0, len(items), size) for row in run(items[first : first + size])]


OBJECTIVES = {"mdm": None, "ar": NextToken, "bd3": partial(BlockDiffusion, block_size=4)}


@pytest.fixture(scope="module", params=list(OBJECTIVES))
def unpadded_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A model whose tokenizer has no pad token (as GPT-2-style ones): batches pad with [MASK]."""
    tokenizer = train_tokenizer(TEXTS * 20, 80, "wordpiece", tmp_path_factory.mktemp("tok"))
    tokenizer.pad_token = None
    assert tokenizer.pad_token_id is None
    torch.manual_seed(0)
    causal = request.param == "ar"
    backbone = NativeTransformer(
        len(tokenizer), dim=32, n_layers=2, n_heads=2, max_len=32, causal=causal
    )
    return DiffusionLM(backbone, tokenizer, objective=OBJECTIVES[request.param]).eval()


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


@pytest.mark.parametrize("size", BATCH_SIZES)
def test_greedy_generation_does_not_depend_on_the_batch(
    unpadded_model: DiffusionLM, size: int
) -> None:
    def run(chunk: list[str]) -> list[list[int]]:
        out = unpadded_model.generate_with_info(chunk, 6, sampler="greedy", steps=6)
        return out.tokens.tolist()

    alone = [run([prompt])[0] for prompt in PROMPTS]
    assert in_batches(run, PROMPTS, size) == alone


@pytest.mark.parametrize("size", BATCH_SIZES)
def test_infill_does_not_depend_on_the_batch(unpadded_model: DiffusionLM, size: int) -> None:
    templates = [f"{prompt} [MASK]x2 the" for prompt in PROMPTS]

    def run(chunk: list[str]) -> list[str]:
        return unpadded_model.infill_with_info(chunk, sampler="greedy", steps=2).texts

    assert in_batches(run, templates, size) == [run([t])[0] for t in templates]


@pytest.mark.parametrize("size", BATCH_SIZES)
def test_log_likelihood_does_not_depend_on_the_batch(
    unpadded_model: DiffusionLM, size: int
) -> None:
    answers = ["sat on", "the mat", "rug", "the log", "owl", "cat sat", "flew", "mat"]

    def run(pairs: list[tuple[str, str]]) -> list[float]:
        prompts, texts = zip(*pairs, strict=True)
        values = unpadded_model.log_likelihood(
            list(prompts), list(texts), mc_samples=8, batch_size=size, seed=3
        )
        return values.tolist()

    pairs = list(zip(PROMPTS, answers, strict=True))
    batched, alone = in_batches(run, pairs, size), [run([pair])[0] for pair in pairs]
    assert batched == pytest.approx(alone, rel=1e-5, abs=1e-5)
