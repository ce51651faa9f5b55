"""Classifier-free guidance: formula, passes, NFE accounting, and the unconditional canvas."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from llada.diffusion.guidance import combine_guidance, guided_logits, unconditional_canvas
from llada.diffusion.remasking import LowConfidenceRemasking
from llada.diffusion.sampling import GenerationResult, generate
from llada.diffusion.token_choice import Greedy

MASK = 99
PROMPT = 3


class PromptAware:
    """Logits `cond` when the prompt is visible and `uncond` when it is masked, per row.

    Context-free otherwise, so guided greedy decoding must give argmax(u + (w + 1)(c - u)).
    """

    def __init__(self, length: int, vocab: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.cond = torch.randn(length, vocab, generator=gen)  # (L, V)
        self.uncond = torch.randn(length, vocab, generator=gen)
        self.calls: list[Tensor] = []
        self.masks: list[Tensor | None] = []

    def __call__(self, canvas: Tensor, attention_mask: Tensor | None) -> Tensor:
        self.calls.append(canvas.clone())
        self.masks.append(attention_mask)
        sees_prompt = (canvas[:, :PROMPT] != MASK).all(dim=1)  # (B,)
        return torch.where(sees_prompt[:, None, None], self.cond, self.uncond)  # (B, L, V)


def prompted(batch: int, length: int) -> Tensor:
    canvas = torch.full((batch, length), MASK)
    canvas[:, :PROMPT] = torch.tensor([4, 5, 6])
    return canvas


def test_combine_guidance_formula() -> None:
    cond, uncond = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0])
    assert torch.equal(combine_guidance(cond, uncond, 0.0), cond)
    assert torch.allclose(combine_guidance(cond, uncond, 2.0), torch.tensor([2.0, -8.0]))


def test_unconditional_canvas_masks_only_the_prompt() -> None:
    canvas = prompted(2, 6)
    canvas[:, 4] = 1
    prompt_mask = torch.zeros(2, 6, dtype=torch.bool)
    prompt_mask[:, :PROMPT] = True
    out = unconditional_canvas(canvas, prompt_mask, MASK)
    assert (out[:, :PROMPT] == MASK).all() and torch.equal(out[:, PROMPT:], canvas[:, PROMPT:])


def test_guided_logits_one_batched_call_counts_two() -> None:
    model = PromptAware(6, 5)
    canvas = prompted(2, 6)
    attention = torch.ones(2, 6, dtype=torch.long)
    logits, evaluations = guided_logits(
        model, canvas, attention, mask_id=MASK, prompt_mask=canvas != MASK, scale=1.5
    )
    assert evaluations == 2 and len(model.calls) == 1
    assert model.calls[0].shape == (4, 6) and model.masks[0].shape == (4, 6)
    assert torch.allclose(
        logits, (model.uncond + 2.5 * (model.cond - model.uncond)).expand(2, -1, -1)
    )
    plain, evaluations = guided_logits(
        model, canvas, attention, mask_id=MASK, prompt_mask=None, scale=0.0
    )
    assert evaluations == 1 and model.calls[-1].shape == (2, 6)
    assert torch.equal(plain, model.cond.expand(2, -1, -1))


def run(model: PromptAware, cfg_scale: float, **kwargs: object) -> GenerationResult:
    return generate(
        model,
        prompted(2, 9),
        MASK,
        steps=3,
        chooser=Greedy(),
        remasking=LowConfidenceRemasking(),
        gen_start=PROMPT,
        cfg_scale=cfg_scale,
        **kwargs,
    )


def test_cfg_zero_equals_plain_and_costs_no_second_pass() -> None:
    plain_model, zero_model = PromptAware(9, 7), PromptAware(9, 7)
    plain = run(plain_model, 0.0)
    zero = run(zero_model, 0.0, prompt_mask=prompted(2, 9) != MASK)
    assert torch.equal(plain.tokens, zero.tokens)
    assert plain.nfe == zero.nfe == 3 == len(zero_model.calls)
    assert all(call.shape[0] == 2 for call in zero_model.calls)  # no unconditional rows


def test_cfg_matches_formula_and_counts_both_passes() -> None:
    scale = 3.0
    model = PromptAware(9, 7)
    guided = run(model, scale)  # default prompt_mask: every token given at the start
    expected = (model.uncond + (scale + 1.0) * (model.cond - model.uncond)).argmax(-1)  # (L,)
    assert torch.equal(guided.tokens[:, PROMPT:], expected[PROMPT:].expand(2, -1))
    assert guided.nfe == 6 and len(model.calls) == 3  # 3 steps, each 2 evaluations in one call
    for call in model.calls:
        assert call.shape == (4, 9)
        assert (call[2:, :PROMPT] == MASK).all() and (call[:2, :PROMPT] != MASK).all()
        assert torch.equal(call[2:, PROMPT:], call[:2, PROMPT:])
    # The test can fail: guidance changes the answer on this model.
    assert not torch.equal(guided.tokens, run(PromptAware(9, 7), 0.0).tokens)


def test_cfg_rejects_negative_scale_and_bad_prompt_mask() -> None:
    with pytest.raises(ValueError, match=r"cfg_scale.*-1"):
        run(PromptAware(9, 7), -1.0)
    with pytest.raises(ValueError, match="prompt_mask shape"):
        run(PromptAware(9, 7), 1.0, prompt_mask=torch.ones(2, 4, dtype=torch.bool))


def test_default_prompt_mask_is_every_given_token() -> None:
    # Infilling: a given suffix token is conditioning too, so the unconditional rows mask it.
    model = PromptAware(9, 7)
    canvas = prompted(1, 9)
    canvas[:, -1] = 2
    generate(
        model,
        canvas,
        MASK,
        steps=2,
        chooser=Greedy(),
        remasking=LowConfidenceRemasking(),
        gen_start=PROMPT,
        cfg_scale=1.0,
    )
    first = model.calls[0]  # (2, 9): conditional row, unconditional row
    assert first[0, -1] == 2 and first[1, -1] == MASK and (first[1, :PROMPT] == MASK).all()
