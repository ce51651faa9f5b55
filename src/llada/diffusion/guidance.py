"""Classifier-free guidance for masked diffusion (LLaDA convention, ALGORITHMS.md section 4).

The unconditional prediction is the same model on the canvas with the prompt masked out, so a model
trained with prompt dropout needs nothing else; `logits = u + (w + 1) * (c - u)`, w = 0 is off.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

LogitsFn = Callable[[Tensor, Tensor | None], Tensor]


def unconditional_canvas(canvas: Tensor, prompt_mask: Tensor, mask_id: int) -> Tensor:
    """canvas (B, L) with the prompt positions (prompt_mask (B, L) bool) replaced by the mask id."""
    return canvas.masked_fill(prompt_mask, mask_id)  # (B, L)


def combine_guidance(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """u + (w + 1) * (c - u): w = 0 gives the conditional logits, w > 0 pushes away from u."""
    return uncond + (scale + 1.0) * (cond - uncond)  # (B, L, V)


def guided_logits(
    logits_fn: LogitsFn,
    canvas: Tensor,
    attention_mask: Tensor | None,
    *,
    mask_id: int,
    prompt_mask: Tensor | None,
    scale: float,
) -> tuple[Tensor, int]:
    """(logits (B, L, V), network evaluations spent).

    With scale > 0 the conditional and unconditional canvases go through one batched call of 2B
    rows (one launch, as in LLaDA's code) that counts as 2 evaluations: NFE measures compute per
    row, so guided and unguided runs stay comparable. With scale == 0 there is no second pass.
    """
    if scale == 0.0:
        return logits_fn(canvas, attention_mask), 1
    if prompt_mask is None:
        raise ValueError("cfg_scale > 0 needs prompt_mask (B, L) marking the prompt positions")
    both = torch.cat([canvas, unconditional_canvas(canvas, prompt_mask, mask_id)])  # (2B, L)
    both_attention = None if attention_mask is None else torch.cat([attention_mask] * 2)
    logits = logits_fn(both, both_attention)  # (2B, L, V)
    batch = canvas.shape[0]
    return combine_guidance(logits[:batch], logits[batch:], scale), 2
