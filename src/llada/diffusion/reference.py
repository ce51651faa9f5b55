"""LLaDA's sampler written plainly from the paper (Algorithm 5, low-confidence remasking with
semi-autoregressive blocks): the baseline our decoder is measured and tested against.

Like the official code, every step runs the model on the whole canvas and computes the noise and
the confidences over all of it, then commits the k most confident masked positions of the current
block. Two differences, both ours on purpose: a committed token is never the mask id (the official
code can commit `[MASK]` itself when the model predicts it), and left padding (rows of different
prompt lengths) is never filled. Under greedy choice `sampling.generate` must give the same tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor

from llada.diffusion.guidance import LogitsFn
from llada.diffusion.sampling import tokens_per_step


def gumbel_argmax(logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
    """argmax of float64 logits / T plus Gumbel noise over the whole (B, L, V); T = 0: argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)  # (B, L)
    scores = logits.to(torch.float64) / temperature
    uniform = torch.rand(
        scores.shape, dtype=torch.float64, generator=generator, device=scores.device
    )
    gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(torch.float64).tiny)))
    return (scores + gumbel).argmax(dim=-1)  # (B, L)


@torch.no_grad()
def reference_generate(
    logits_fn: LogitsFn,
    canvas: Tensor,
    mask_id: int,
    *,
    gen_start: int,
    steps: int,
    block_length: int,
    attention_mask: Tensor | None = None,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill canvas[:, gen_start:] (B, L); block_length divides the region, the block count steps.

    -> the filled canvas (B, L).
    """
    canvas = canvas.clone()
    length = canvas.shape[1]
    region = length - gen_start
    if region % block_length or steps % (region // block_length):
        raise ValueError("the reference needs block_length | n_tokens and blocks | steps")
    n_blocks = region // block_length
    columns = torch.arange(length, device=canvas.device)  # (L,)
    visible = (
        torch.ones_like(canvas, dtype=torch.bool)
        if attention_mask is None
        else attention_mask.bool()
    )
    for block in range(n_blocks):
        start = gen_start + block * block_length
        end = start + block_length
        in_block = (canvas[:, start:end] == mask_id).sum(dim=1)  # (B,)
        schedule = tokens_per_step(in_block, steps // n_blocks)  # (B, S)
        for step in range(steps // n_blocks):
            masked = (canvas == mask_id) & visible & (columns >= gen_start)  # (B, L)
            logits = logits_fn(canvas, attention_mask).clone()  # (B, L, V), whole canvas
            logits[..., mask_id] = float("-inf")
            chosen = gumbel_argmax(logits, temperature, generator)  # (B, L)
            probs = logits.float().softmax(dim=-1)  # (B, L, V)
            confidence = probs.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)  # (B, L)
            confidence[:, end:] = float("-inf")  # later blocks wait
            confidence = torch.where(masked, confidence, float("-inf"))
            chosen = torch.where(masked, chosen, canvas)
            for row in range(canvas.shape[0]):
                picked = torch.topk(confidence[row], int(schedule[row, step])).indices
                canvas[row, picked] = chosen[row, picked]
    return canvas
