"""The model-agnostic reverse process: fill a masked canvas in `steps` forward passes.

Works with any `logits_fn(canvas, attention_mask) -> logits`, so native and Hugging Face models,
token choosers and remasking strategies can be mixed freely (ALGORITHMS.md section 4).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from llada.diffusion.remasking import Remasking
from llada.diffusion.token_choice import TokenChooser

LogitsFn = Callable[[Tensor, Tensor | None], Tensor]


def tokens_per_step(n_masked: Tensor, steps: int) -> Tensor:
    """LLaDA's linear split of M masks over S steps: k_s = M // S + (1 if s < M % S else 0).

    n_masked (B,) long -> (B, steps) long; each row sums to its M.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    base = (n_masked // steps).unsqueeze(1)  # (B, 1)
    remainder = (n_masked % steps).unsqueeze(1)  # (B, 1)
    step_index = torch.arange(steps, device=n_masked.device).unsqueeze(0)  # (1, S)
    return base + (step_index < remainder).long()  # (B, S)


@dataclass
class GenerationResult:
    """Final canvas plus the cost of getting there."""

    tokens: Tensor  # (B, L) final canvas
    nfe: int  # forward passes
    seconds: float


def block_plan(
    length: int, gen_start: int, steps: int, block_length: int | None
) -> list[tuple[int, int, int]]:
    """[(start, end, steps)] per block of canvas[:, gen_start:length], decoded left to right.

    Blocks are `block_length` long except the last, which takes the remainder (so any n_tokens
    works). Steps are split over blocks like tokens over steps: steps // n_blocks each, the first
    steps % n_blocks blocks one more; every block needs at least one step. With block_length
    dividing the region and steps divisible by the block count this is LLaDA's plan exactly.
    """
    if not 0 <= gen_start < length:
        raise ValueError(f"gen_start={gen_start} must be in [0, {length}) (canvas length)")
    region = length - gen_start
    block = region if block_length is None else block_length
    if block < 1:
        raise ValueError(f"block_length must be >= 1 or null, got {block_length}")
    starts = list(range(gen_start, length, block))
    if steps < len(starts):
        raise ValueError(
            f"steps={steps} is fewer than the {len(starts)} block(s) of block_length={block}; "
            "raise steps or block_length"
        )
    block_steps = tokens_per_step(torch.tensor([steps]), len(starts))[0].tolist()
    return [
        (start, min(start + block, length), n) for start, n in zip(starts, block_steps, strict=True)
    ]


def commit_top_k(scores: Tensor, k: Tensor) -> Tensor:
    """Bool (B, L) selecting each row's k[b] highest scores (ties broken by position), no row loop.

    scores (B, L) with -inf where nothing may be committed; k (B,) long.
    """
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # (B, L)
    positions = torch.arange(scores.shape[1], device=scores.device).expand_as(order)  # (B, L)
    rank = torch.empty_like(order).scatter_(1, order, positions)  # (B, L) rank of each position
    return rank < k.unsqueeze(1)


def _eligible_scores(score: Tensor, eligible: Tensor) -> Tensor:
    """score (B, L) as float32 with -inf off `eligible`; eligible ones always rank above them."""
    finite = torch.finfo(torch.float32)
    # A strategy may score a masked position -inf or NaN; it must still outrank ineligible ones.
    score = score.float().nan_to_num(nan=finite.min, posinf=finite.max, neginf=finite.min)
    return score.masked_fill(~eligible, float("-inf"))  # (B, L)


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
    """Fill the masks in canvas[:, gen_start:] block by block, committing k_s tokens per step.

    canvas (B, L) long, left-padded by the caller; attention_mask (B, L) is passed to logits_fn.
    A block with no masks left costs no forward pass, so nfe <= steps (== steps when every
    block has at least as many masks as steps).
    """
    started = time.perf_counter()
    length = canvas.shape[1]
    plan = block_plan(length, gen_start, steps, block_length)
    canvas = canvas.clone()
    positions = torch.arange(length, device=canvas.device)  # (L,)
    nfe = 0
    for start, end, block_steps in plan:
        in_block = (positions >= start) & (positions < end)  # (L,)
        n_masked = ((canvas == mask_id) & in_block).sum(dim=1)  # (B,)
        schedule = tokens_per_step(n_masked, block_steps)  # (B, S_b)
        for step in range(block_steps):
            eligible = (canvas == mask_id) & in_block  # (B, L)
            if not eligible.any():
                break  # block already full: further passes could commit nothing
            logits = logits_fn(canvas, attention_mask)  # (B, L, V)
            nfe += 1
            if mask_id < logits.shape[-1]:
                # A committed token must never be the mask itself.
                logits = logits.clone()
                logits[..., mask_id] = float("-inf")
            tokens = chooser.choose(logits, generator)  # (B, L)
            score = remasking.confidence(logits, tokens, generator)  # (B, L)
            score = _eligible_scores(score, eligible)  # (B, L)
            commit = commit_top_k(score, schedule[:, step]) & eligible  # (B, L)
            canvas = torch.where(commit, tokens, canvas)
    return GenerationResult(tokens=canvas, nfe=nfe, seconds=time.perf_counter() - started)
