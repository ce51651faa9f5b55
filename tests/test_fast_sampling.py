"""The per-step work of the decoder: the same tokens as LLaDA's plain algorithm, computed on the
block's masked positions only; the parallel rules' guarantees."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from llada.diffusion.reference import reference_generate
from llada.diffusion.remasking import FactorRemasking, LowConfidenceRemasking, ThresholdRemasking
from llada.diffusion.sampling import generate
from llada.diffusion.token_choice import Greedy
from llada.models.native import NativeTransformer

MASK, PAD, VOCAB = 1, 0, 40


def network() -> NativeTransformer:
    torch.manual_seed(0)
    return NativeTransformer(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, max_len=64).eval()


def prompts_canvas(lengths: list[int], n_tokens: int) -> tuple[Tensor, Tensor]:
    """Left-padded [prompt | MASK * n_tokens] rows of the given prompt lengths, and attention."""
    width = max(lengths) + n_tokens
    generator = torch.Generator().manual_seed(1)
    canvas = torch.full((len(lengths), width), PAD)
    attention = torch.zeros_like(canvas)
    for row, length in enumerate(lengths):
        canvas[row, width - n_tokens - length : width - n_tokens] = torch.randint(
            2, VOCAB, (length,), generator=generator
        )
        canvas[row, width - n_tokens :] = MASK
        attention[row, width - n_tokens - length :] = 1
    return canvas, attention


class WholeCanvas:
    """The network seen through the plain interface only: logits of the whole canvas."""

    def __init__(self, net: NativeTransformer) -> None:
        self.net = net

    def __call__(self, canvas: Tensor, attention_mask: Tensor | None) -> Tensor:
        return self.net(canvas, attention_mask)


@pytest.mark.parametrize("steps", [16, 8])
@pytest.mark.parametrize("plain", [False, True], ids=["block_head", "whole_canvas"])
@torch.no_grad()
def test_greedy_tokens_equal_the_reference_decoder(steps: int, plain: bool) -> None:
    net = network()
    canvas, attention = prompts_canvas([3, 7, 1, 5, 7, 2], n_tokens=16)
    gen_start = canvas.shape[1] - 16
    reference = reference_generate(
        net, canvas, MASK, gen_start=gen_start, steps=steps, block_length=4,
        attention_mask=attention,
    )  # fmt: skip
    ours = generate(
        WholeCanvas(net) if plain else net, canvas, MASK, steps=steps, chooser=Greedy(),
        remasking=LowConfidenceRemasking(), attention_mask=attention, block_length=4,
        gen_start=gen_start,
    )  # fmt: skip
    assert not bool((reference[:, gen_start:] == MASK).any())
    assert torch.equal(ours.tokens, reference)
    assert ours.nfe == steps


@torch.no_grad()
def test_the_block_head_path_computes_logits_for_the_block_only() -> None:
    net = network()
    rows: list[int] = []
    forward = net.forward

    def counting(*args, **kwargs):  # the real network; records how many rows the head ran on
        logits = forward(*args, **kwargs)
        rows.append(logits.reshape(-1, VOCAB).shape[0])
        return logits

    net.forward = counting  # type: ignore[method-assign]
    canvas, attention = prompts_canvas([4, 4], n_tokens=8)
    generate(net, canvas, MASK, steps=8, chooser=Greedy(), remasking=LowConfidenceRemasking(),
             attention_mask=attention, block_length=4, gen_start=4)  # fmt: skip
    assert rows == [2 * 4] * 8  # batch x block, never batch x canvas


class Confident:
    """Fixed per-position logits whose top-1 probabilities straddle the threshold."""

    def __init__(self, length: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.table = 3.0 * torch.randn(length, VOCAB, generator=generator)  # (L, V)

    def __call__(self, canvas: Tensor, attention_mask: Tensor | None) -> Tensor:
        return self.table.expand(canvas.shape[0], -1, -1)


@pytest.mark.parametrize("rule", [ThresholdRemasking(0.5), FactorRemasking(1.0)])
def test_parallel_rules_commit_at_least_one_and_nothing_unsure_but_the_forced(rule) -> None:
    canvas = torch.cat([torch.full((3, 2), 5), torch.full((3, 24), MASK)], dim=1)
    out = generate(
        Confident(26), canvas, MASK, steps=6, chooser=Greedy(), remasking=rule,
        block_length=8, gen_start=2, record=True,
    )  # fmt: skip
    assert not bool((out.tokens == MASK).any())
    previous = canvas
    several = 0
    for state, confidence in zip(out.trajectory, out.confidences, strict=True):
        new = (previous == MASK) & (state != MASK)  # (B, L) committed this step
        for row in range(canvas.shape[0]):
            had_masks = bool(((previous[row] == MASK) & ~confidence[row].isnan()).any())
            committed = confidence[row][new[row]]
            if not had_masks:
                assert committed.numel() == 0
                continue
            assert committed.numel() >= 1  # progress every step
            if committed.numel() == 1:
                # the forced commit, when nothing is sure enough, is the most confident one
                assert committed[0] == confidence[row].nan_to_num(-1.0).max()
                continue
            several += 1
            if isinstance(rule, ThresholdRemasking):
                assert bool((committed >= rule.threshold).all())
            else:  # factor: (n + 1) * (1 - c_n) < f for the n-th most confident committed
                n = committed.numel()
                assert (n + 1) * (1 - float(committed.min())) < rule.factor
        previous = state
    assert several > 0  # the rule did commit several tokens in one step somewhere
