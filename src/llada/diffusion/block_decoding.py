"""Block diffusion decoding: blocks left to right, each denoised in parallel steps, exact KV cache.

A committed block never changes, and under the block-causal pattern a clean block's keys and
values depend only on the blocks before it, so caching them is exact (BD3-LM section 3): each
step runs the current block only, attending to the cache. Rows are left-aligned internally so
that every row's block grid starts at its first token (left padding of the caller's canvas
would shift it); outputs of any length stop after the block in which EOS is committed, and
past the context the cache keeps a sliding window of whole blocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor

from llada.diffusion.guidance import LogitsFn
from llada.diffusion.remasking import Remasking
from llada.diffusion.sampling import (
    BlockDenoiser,
    GenerationResult,
    MaskProb,
    recorder,
    step_plan_for,
)
from llada.diffusion.token_choice import TokenChooser


def block_ids(length: int, block_size: int, device: torch.device | str = "cpu") -> Tensor:
    """Block index of every position: (L,) long."""
    return torch.arange(length, device=device) // block_size


def block_causal(length: int, block_size: int, device: torch.device | str = "cpu") -> Tensor:
    """(L, L) bool: a position sees every position of its own block and of earlier blocks."""
    block = block_ids(length, block_size, device)
    return block[None, :] <= block[:, None]


def training_pattern(length: int, block_size: int, device: torch.device | str = "cpu") -> Tensor:
    """(2L, 2L) bool over [x_t ; x_0]: `[[BD, OBC], [0, BC]]` (ALGORITHMS.md section 7).

    A noisy block sees itself (BD) and the clean blocks before it (OBC); a clean block sees the
    clean blocks up to itself (BC); nothing sees the noisy half from the clean one.
    """
    block = block_ids(length, block_size, device)
    query, key = block[:, None], block[None, :]  # (L, 1), (1, L)
    top = torch.cat([query == key, key < query], dim=1)  # (L, 2L)
    bottom = torch.cat([torch.zeros_like(top[:, :length]), key <= query], dim=1)  # (L, 2L)
    return torch.cat([top, bottom], dim=0)


def window_start(end: int, block_size: int, context: int | None) -> int:
    """First position a block ending at `end` may attend to: whole blocks, at most `context`."""
    if context is None or end <= context:
        return 0
    return -(-(end - context) // block_size) * block_size  # ceil to the block grid


def left_aligned(visible: Tensor) -> Tensor:
    """Column order (B, W) that moves each row's visible tokens to its start (stable)."""
    return torch.sort((~visible).to(torch.int8), dim=1, stable=True).indices


@dataclass
class BlockDecoder:
    """Decode a canvas block by block with a block-diffusion model.

    `logits_fn(ids, attention_mask, kv=..., attention=...)` is a backbone (or a module that
    forwards those options to one) that takes attention patterns and a `BlockKVCache`.
    """

    logits_fn: LogitsFn
    mask_id: int
    block_size: int
    context: int | None
    use_cache: bool = True  # the backbone's `new_block_cache()` (the native transformer's)

    def logits_fn_backbone(self) -> Any:
        """The network behind `logits_fn` (a DiffusionLM forwards to its `backbone`)."""
        return getattr(self.logits_fn, "backbone", self.logits_fn)

    @torch.no_grad()
    def __call__(
        self,
        canvas: Tensor,
        *,
        steps: int,
        chooser: TokenChooser,
        remasking: Remasking,
        attention_mask: Tensor | None = None,
        gen_start: int = 0,
        generator: torch.Generator | None = None,
        eos_id: int | None = None,
        eos_last: bool = False,
        forbid_ids: Sequence[int] = (),
        mask_prob: MaskProb | None = None,
        record: bool = False,
    ) -> GenerationResult:
        """Fill the masks of canvas[:, gen_start:] (B, W); `steps` per block.

        The caller's layout (left padding) is kept in the result. A row stops after the block in
        which it commits EOS when nothing given follows: its remaining masks become EOS.
        """
        started = time.perf_counter()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if eos_last and eos_id is None:
            raise ValueError("eos_last=True needs eos_id (the end-of-sequence token id)")
        batch, width = canvas.shape
        device = canvas.device
        visible = (
            torch.ones_like(canvas, dtype=torch.bool)
            if attention_mask is None
            else attention_mask.bool()
        )
        columns = torch.arange(width, device=device)
        to_fill = (canvas == self.mask_id) & visible & (columns >= gen_start)  # (B, W)
        order = left_aligned(visible)  # (B, W)
        ids = canvas.gather(1, order)  # (B, W) aligned
        valid, fill = visible.gather(1, order), to_fill.gather(1, order)  # (B, W)
        # Given tokens after a position: a row may stop at EOS only where none follow.
        given = valid & ~fill  # (B, W)
        given_after = given.flip(1).cumsum(1).flip(1) - given.long()  # (B, W) count after col

        result = GenerationResult(tokens=canvas.clone(), nfe=0, seconds=0.0)

        snapshot = recorder(result) if record else None
        denoiser = BlockDenoiser(
            self.mask_id,
            chooser,
            remasking,
            result,
            generator=generator,
            eos_id=eos_id,
            eos_last=eos_last,
            forbid_ids=forbid_ids,
            step_plan=step_plan_for(mask_prob),
        )
        n_blocks = -(-width // self.block_size)
        first = next(
            (
                k
                for k in range(n_blocks)
                if fill[:, k * self.block_size : (k + 1) * self.block_size].any()
            ),
            n_blocks,
        )
        cache = self.logits_fn_backbone().new_block_cache() if self.use_cache else None
        done = torch.zeros(batch, dtype=torch.bool, device=device)  # (B,)
        for k in range(first, n_blocks):
            start, end = k * self.block_size, min((k + 1) * self.block_size, width)
            low = window_start(end, self.block_size, self.context)
            if cache is not None:
                cache.drop_before(low)
            region = fill[:, start:end] & ~done[:, None]  # (B, n)
            forward = partial(self._step_logits, cache, ids, valid, start, low)
            if snapshot is not None:
                denoiser.on_step = partial(_snapshot, snapshot, ids, canvas, order, start)
            commit_score = torch.full(region.shape, float("nan"), device=device)  # (B, n)
            block, _ = denoiser.run(forward, ids[:, start:end], region, region, steps, commit_score)
            ids[:, start:end] = block
            if eos_id is not None:
                committed_eos = ((block == eos_id) & region).any(dim=1)  # (B,)
                stops = committed_eos & (given_after[:, end - 1] == 0)
                rest = fill & stops[:, None] & (columns >= end)  # (B, W)
                ids = ids.masked_fill(rest, eos_id)
                done |= stops
            if bool((done | ~(fill[:, end:].any(dim=1))).all()):
                break
        result.tokens = canvas.scatter(1, order, ids)  # the caller's layout
        result.seconds = time.perf_counter() - started
        return result

    def _step_logits(
        self,
        cache: Any,
        ids: Tensor,
        valid: Tensor,
        start: int,
        low: int,
        block: Tensor,
    ) -> tuple[Tensor, int]:
        """(logits (B, n, V) of the current block `block` (B, n) at positions start.., 1 NFE).

        With the cache, the block's first pass also encodes the final tokens not yet cached
        (the prompt's blocks, the block before): they lead the pass, block-causally, and their
        keys/values are appended, so caching costs no extra pass.
        """
        batch, length = block.shape
        first = cache.first_position if cache is not None else low
        segment = torch.cat([ids[:, first:start], block], dim=1)  # (B, pending + n)
        pending = start - first
        pattern = block_causal(pending + length, self.block_size, block.device)
        keys_visible = valid[:, (cache.start if cache is not None else low) : start + length]
        head = torch.zeros(batch, pending + length, dtype=torch.bool, device=block.device)
        head[:, pending:] = True  # only the block's logits are needed
        if cache is None:  # no cache: the whole window again, at its positions
            positions = torch.arange(low, start + length, device=block.device)
            logits = self.logits_fn(
                segment, keys_visible, attention=pattern, positions=positions, output_mask=head
            )
            return logits.view(batch, length, -1), 1
        pattern = torch.cat(
            [torch.ones(pending + length, cache.length, dtype=torch.bool, device=block.device),
             pattern], dim=1,
        )  # fmt: skip  # (pending + n, cached + pending + n)
        cache.record = pending
        logits = self.logits_fn(
            segment, keys_visible, kv=cache, attention=pattern, output_mask=head
        )
        cache.recorded()
        return logits.view(batch, length, -1), 1


def _snapshot(
    record: Callable[[Tensor, Tensor, Tensor], None],
    ids: Tensor,
    canvas: Tensor,
    order: Tensor,
    start: int,
    block: Tensor,
    score: Tensor,
    eligible: Tensor,
) -> None:
    """Record a step of the block at `start` as the whole canvas in the caller's layout."""
    end = start + block.shape[1]
    full = ids.clone()
    full[:, start:end] = block
    scores = torch.full(ids.shape, float("nan"), device=ids.device)  # (B, W) aligned
    scores[:, start:end] = score.masked_fill(~eligible, float("nan"))
    scores = torch.full_like(scores, float("nan")).scatter(1, order, scores)
    record(canvas.scatter(1, order, full), scores, ~scores.isnan())
