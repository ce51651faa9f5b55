"""The reverse process on tiny deterministic "models" whose answers we know."""

from __future__ import annotations

import pytest
import torch

from llada.diffusion.remasking import LowConfidenceRemasking, RandomRemasking, make_remasking
from llada.diffusion.sampling import commit_top_k, generate, tokens_per_step
from llada.diffusion.token_choice import Greedy, Multinomial, make_token_chooser

MASK, VOCAB = 0, 12


class Recorder:
    """logits_fn over a fixed table: position i prefers token (i % 10) + 2, more sharply at larger i.

    Records every canvas it is called with, so tests can observe the decoding order.
    """

    def __init__(self, length: int) -> None:
        self.table = torch.full((length, VOCAB), -5.0)  # (L, V)
        for i in range(length):
            self.table[i, (i % 10) + 2] = float(i + 1)  # confidence rises with position
        self.canvases: list[torch.Tensor] = []
        self.masks: list[torch.Tensor | None] = []

    def __call__(self, ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        self.canvases.append(ids.clone())
        self.masks.append(attention_mask)
        return self.table[: ids.shape[1]].expand(ids.shape[0], -1, -1).clone()  # (B, L, V)


def commit_order(recorder: Recorder, final: torch.Tensor) -> list[list[int]]:
    """Positions committed at each step of row 0."""
    states = [*recorder.canvases, final]
    return [
        torch.nonzero((before[0] == MASK) & (after[0] != MASK)).flatten().tolist()
        for before, after in zip(states[:-1], states[1:], strict=True)
    ]


@pytest.mark.parametrize(("masks", "steps"), [(10, 4), (7, 7), (3, 5), (64, 64), (0, 2)])
def test_tokens_per_step_follows_llada_rule(masks: int, steps: int) -> None:
    k = tokens_per_step(torch.tensor([masks]), steps)[0]
    assert int(k.sum()) == masks
    expected = [masks // steps + (1 if s < masks % steps else 0) for s in range(steps)]
    assert k.tolist() == expected


def test_commit_top_k_picks_highest_scores_per_row() -> None:
    scores = torch.tensor([[0.1, 0.9, float("-inf"), 0.5], [0.3, 0.2, 0.8, 0.1]])
    chosen = commit_top_k(scores, torch.tensor([2, 1]))
    assert chosen.tolist() == [[False, True, False, True], [False, False, True, False]]


def test_greedy_low_confidence_fills_in_confidence_order() -> None:
    length = 8
    recorder = Recorder(length)
    canvas = torch.full((1, length), MASK)
    result = generate(
        recorder, canvas, MASK, steps=4, chooser=Greedy(), remasking=LowConfidenceRemasking()
    )
    assert result.nfe == 4
    assert result.tokens[0].tolist() == [(i % 10) + 2 for i in range(length)]
    assert commit_order(recorder, result.tokens) == [[6, 7], [4, 5], [2, 3], [0, 1]]


def test_prompt_is_kept_and_attention_mask_passed_through() -> None:
    recorder = Recorder(10)
    canvas = torch.tensor([[5, 5, 7, 9, MASK, MASK, MASK, MASK, MASK, MASK]])
    attention = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1, 1, 1]])
    result = generate(
        recorder,
        canvas,
        MASK,
        steps=3,
        chooser=Greedy(),
        remasking=RandomRemasking(),
        attention_mask=attention,
        gen_start=4,
        generator=torch.Generator().manual_seed(0),
    )
    assert result.tokens[0, :4].tolist() == [5, 5, 7, 9]
    assert not (result.tokens == MASK).any()
    assert all(mask is attention for mask in recorder.masks)


def test_blocks_are_decoded_left_to_right() -> None:
    recorder = Recorder(8)
    canvas = torch.full((1, 8), MASK)
    result = generate(
        recorder,
        canvas,
        MASK,
        steps=4,
        chooser=Greedy(),
        remasking=LowConfidenceRemasking(),
        block_length=4,
    )
    order = commit_order(recorder, result.tokens)
    # Low confidence alone would start at the right end; blocks force the left block first.
    assert order == [[2, 3], [0, 1], [6, 7], [4, 5]]


def test_bad_step_plans_raise() -> None:
    canvas = torch.full((1, 8), MASK)
    common = {"chooser": Greedy(), "remasking": RandomRemasking()}
    with pytest.raises(ValueError, match="must divide"):
        generate(Recorder(8), canvas, MASK, steps=4, block_length=3, **common)
    with pytest.raises(ValueError, match="multiple of the 2 block"):
        generate(Recorder(8), canvas, MASK, steps=3, block_length=4, **common)


def test_multinomial_is_seeded_and_matches_softmax() -> None:
    logits = torch.tensor([[[1.0, 0.0, -1.0, 2.0, 0.5]]]).expand(1, 20000, 5)  # (1, N, 5)
    sampler = Multinomial(temperature=0.7)
    first = sampler.choose(logits, torch.Generator().manual_seed(3))
    again = sampler.choose(logits, torch.Generator().manual_seed(3))
    other = sampler.choose(logits, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    freq = torch.bincount(first.flatten(), minlength=5).float() / first.numel()
    torch.testing.assert_close(freq, (logits[0, 0] / 0.7).softmax(-1), atol=0.01, rtol=0)


def test_top_k_one_and_tiny_top_p_equal_greedy() -> None:
    logits = torch.randn(2, 16, VOCAB, generator=torch.Generator().manual_seed(0))
    greedy = Greedy().choose(logits)
    gen = torch.Generator().manual_seed(1)
    assert torch.equal(Multinomial(top_k=1).choose(logits, gen), greedy)
    assert torch.equal(Multinomial(top_p=1e-6).choose(logits, gen), greedy)
    assert torch.equal(Multinomial(temperature=0.0).choose(logits, gen), greedy)


def test_mask_token_is_never_committed() -> None:
    def prefers_mask(ids: torch.Tensor, _: torch.Tensor | None) -> torch.Tensor:
        logits = torch.zeros(*ids.shape, VOCAB)
        logits[..., MASK] = 10.0  # the model's favourite is the mask itself
        return logits

    result = generate(
        prefers_mask,
        torch.full((2, 6), MASK),
        MASK,
        steps=6,
        chooser=Greedy(),
        remasking=LowConfidenceRemasking(),
    )
    assert not (result.tokens == MASK).any()


def test_registries_name_allowed_options() -> None:
    with pytest.raises(ValueError, match="greedy, multinomial"):
        make_token_chooser("beam")
    with pytest.raises(ValueError, match="random, low_confidence"):
        make_remasking("oracle")
    assert isinstance(make_token_chooser("greedy", temperature=0.5, top_k=None, top_p=None), Greedy)
