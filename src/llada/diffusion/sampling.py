"""The reverse process: from a canvas with mask tokens to text, over any `logits_fn`.

Model-agnostic on purpose: `logits_fn(input_ids, attention_mask) -> logits (B, L, V)` is all it needs,
so the same loop drives a test model and LLaDA-8B.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from llada.diffusion.remasking import Remasking
from llada.diffusion.token_choice import TokenChooser

LogitsFn = Callable[[Tensor, Tensor | None], Tensor]


@dataclass
class GenerationResult:
    tokens: Tensor  # (B, L) final canvas
    nfe: int  # forward passes
    seconds: float


def tokens_per_step(n_masked: Tensor, steps: int) -> Tensor:
    """LLaDA's rule: k_s = M // S + (1 if s < M % S else 0). n_masked (B,) -> (B, steps)."""
    base = (n_masked // steps)[:, None]  # (B, 1)
    extra = torch.arange(steps, device=n_masked.device)[None, :] < (n_masked % steps)[:, None]
    return base + extra.long()  # (B, S)


def _block_bounds(gen_start: int, length: int, block_length: int | None, steps: int) -> list[int]:
    """Block start offsets (plus the end) of the generation region; validates the step plan."""
    region = length - gen_start
    block_length = block_length or region
    if block_length <= 0 or region % block_length:
        raise ValueError(f"block_length={block_length} must divide the generated length {region}")
    n_blocks = region // block_length
    if steps < n_blocks or steps % n_blocks:
        raise ValueError(f"steps={steps} must be a positive multiple of the {n_blocks} block(s)")
    return list(range(gen_start, length + 1, block_length))


def commit_top_k(scores: Tensor, k: Tensor) -> Tensor:
    """Boolean (B, L) selecting each row's k[b] highest scores (ties broken by position).

    scores (B, L) with -inf where nothing may be committed; k (B,) never exceeds the finite count.
    """
    order = scores.argsort(dim=1, descending=True, stable=True)  # (B, L)
    ranks = torch.empty_like(order).scatter_(
        1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    )  # (B, L): rank of each position
    return ranks < k[:, None]


@torch.no_grad()
def generate(
    logits_fn: LogitsFn,
    canvas: Tensor,
    mask_id: int,
    *,
    steps: int,
    chooser: TokenChooser,
    remasking: Remasking,
    attention_mask: Tensor | None = None,
    block_length: int | None = None,
    gen_start: int = 0,
    generator: torch.Generator | None = None,
) -> GenerationResult:
    """Fill the masks of canvas[:, gen_start:] block by block; committed tokens stay fixed."""
    started = time.perf_counter()
    canvas = canvas.clone()  # (B, L)
    bounds = _block_bounds(gen_start, canvas.shape[1], block_length, steps)
    steps_per_block = steps // (len(bounds) - 1)
    positions = torch.arange(canvas.shape[1], device=canvas.device)  # (L,)
    nfe = 0
    for start, end in itertools.pairwise(bounds):
        in_block = (positions >= start) & (positions < end)  # (L,)
        schedule = tokens_per_step(((canvas == mask_id) & in_block).sum(dim=1), steps_per_block)
        for step in range(steps_per_block):
            masked = (canvas == mask_id) & in_block  # (B, L)
            if not masked.any():
                break
            logits = logits_fn(canvas, attention_mask).clone()  # (B, L, V)
            nfe += 1
            logits[..., mask_id] = float("-inf")  # a committed token must not be the mask itself
            tokens = chooser.choose(logits, generator)  # (B, L)
            scores = remasking.confidence(logits, tokens, generator)  # (B, L)
            scores = scores.masked_fill(~masked, float("-inf"))
            commit = commit_top_k(scores, schedule[:, step]) & masked  # (B, L)
            canvas = torch.where(commit, tokens, canvas)
    return GenerationResult(tokens=canvas, nfe=nfe, seconds=time.perf_counter() - started)
