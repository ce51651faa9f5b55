"""The model-agnostic reverse process: fill a masked canvas block by block, a few tokens per step.

Works with any `logits_fn(canvas, attention_mask) -> logits`, so native and Hugging Face models,
token choosers, remasking strategies, guidance and step schedules can be mixed freely
(ALGORITHMS.md section 4).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import Tensor

from llada.diffusion.guidance import LogitsFn, guided_logits
from llada.diffusion.remasking import Remasking, commit_top_k
from llada.diffusion.token_choice import TokenChooser, forbid_tokens

MaskProb = Callable[[Tensor], Tensor]
StepPlan = Callable[[Tensor, int], Tensor]


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


def schedule_tokens_per_step(n_masked: Tensor, steps: int, mask_prob: MaskProb) -> Tensor:
    """Tokens to commit per step when the masks follow a schedule m(t) instead of a straight line.

    Time runs 1 -> 0 on a uniform grid of `steps` intervals; a step from t to s commits
    round(remaining * (1 - m(s)/m(t))) (half up) of the masks still there, keeping one back for the
    last step, which commits all that remain. n_masked (B,) long -> (B, steps) long; rows sum to M.
    For m(t) = t this is LLaDA's linear rule up to rounding.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    grid = 1.0 - torch.arange(steps + 1, dtype=torch.float64) / steps  # (S+1,) t_0 = 1 ... t_S = 0
    m = mask_prob(grid).to(torch.float64).cpu()  # (S+1,)
    # Fraction of the current masks that stay masked after each step; a flat or rising m keeps all.
    stay = torch.where(m[:-1] > 0, m[1:] / m[:-1].clamp_min(1e-300), 0.0).clamp(0.0, 1.0)  # (S,)
    remaining = n_masked.clone()  # (B,)
    counts = []
    for step in range(steps):
        if step == steps - 1:
            k = remaining
        else:
            # +1e-9: 1 - (S-i-1)/(S-i) in floating point must not round 1.5 down to 1.
            share = remaining.double() * (1.0 - stay[step].item())
            k = torch.floor(share + 0.5 + 1e-9).long()
            k = torch.minimum(k, (remaining - 1).clamp_min(0))  # never 0 at the last step
        counts.append(k)
        remaining = remaining - k
    return torch.stack(counts, dim=1)  # (B, S)


def step_plan_for(mask_prob: MaskProb | None) -> StepPlan:
    """LLaDA's linear split, or the masking schedule's (`schedule_steps`) when given m(t)."""
    if mask_prob is None:
        return tokens_per_step
    return lambda n_masked, steps: schedule_tokens_per_step(n_masked, steps, mask_prob)


@dataclass
class GenerationResult:
    """Final canvas plus the cost of getting there (and, when recorded, the path)."""

    tokens: Tensor  # (B, L) final canvas
    nfe: int  # network evaluations of the batch; a CFG step costs 2
    seconds: float
    trajectory: list[Tensor] = field(default_factory=list)  # canvas (B, L) after each step, CPU
    confidences: list[Tensor] = field(
        default_factory=list
    )  # (B, L) float32 per step, NaN off-block
    # (B,) evaluations while each row still had masks to fill: its own cost (adaptive rules
    # such as threshold finish some rows before others)
    row_nfe: Tensor | None = None

    def add_row_nfe(self, counts: Tensor) -> None:
        self.row_nfe = counts.cpu() if self.row_nfe is None else self.row_nfe + counts.cpu()


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


def _eligible_scores(score: Tensor, eligible: Tensor) -> Tensor:
    """score (B, L) as float32 with -inf off `eligible`; eligible ones always rank above them."""
    finite = torch.finfo(torch.float32)
    # A strategy may score a masked position -inf or NaN; it must still outrank ineligible ones.
    score = score.float().nan_to_num(nan=finite.min, posinf=finite.max, neginf=finite.min)
    return score.masked_fill(~eligible, float("-inf"))  # (B, L)


def _eligible_logits(
    logits: Tensor, eligible: Tensor, mask_id: int, forbid_ids: Sequence[int]
) -> Tensor:
    """The rows (N, V) of logits (B, L, V) at `eligible` (B, L), row-major, that no chooser can
    turn into the mask id or a forbidden token.

    Choosing, noise and confidences then cost N rows, not the whole block or canvas; the
    indexing copies, so the filters work in place.
    """
    rows = logits[eligible]  # (N, V), a copy
    if 0 <= mask_id < rows.shape[-1]:
        rows[:, mask_id] = float("-inf")  # a committed token must never be the mask itself
    return forbid_tokens(rows, forbid_ids, in_place=True)


def block_logits(
    logits_fn: LogitsFn, canvas: Tensor, attention_mask: Tensor | None, start: int, end: int
) -> Tensor:
    """Logits (B, end - start, V) of the block canvas[:, start:end], the model run on the canvas.

    A logits function with its own `block_logits` (a KV cache) runs only what it must; one that
    `supports_output_columns` computes its last layer and head on the block's columns only, one
    that `supports_output_mask` its head; others are sliced.
    """
    own = getattr(logits_fn, "block_logits", None)
    if own is not None:
        return own(canvas, attention_mask, start, end)
    if getattr(logits_fn, "supports_output_columns", False):
        return logits_fn(canvas, attention_mask, output_columns=(start, end))  # (B, n, V)
    if getattr(logits_fn, "supports_output_mask", False):
        columns = torch.zeros_like(canvas, dtype=torch.bool)  # (B, L)
        columns[:, start:end] = True
        logits = logits_fn(canvas, attention_mask, output_mask=columns)  # (B * n, V)
        return logits.view(canvas.shape[0], end - start, -1)
    return logits_fn(canvas, attention_mask)[:, start:end]


@dataclass
class CanvasForward:
    """The denoiser's `forward(block)` for a block of a whole canvas: the block is written into
    the canvas, the model (with guidance) runs on it, and the block's logits come back."""

    logits_fn: LogitsFn
    canvas: Tensor  # (B, L), the decoder's own copy, kept current
    attention_mask: Tensor | None
    mask_id: int
    prompt_mask: Tensor | None
    cfg_scale: float
    start: int = 0
    end: int = 0

    def __call__(self, block: Tensor) -> tuple[Tensor, int]:
        """block (B, n) -> (logits (B, n, V), network evaluations)."""
        self.canvas[:, self.start : self.end] = block
        return guided_logits(
            partial(block_logits, self.logits_fn, start=self.start, end=self.end),
            self.canvas,
            self.attention_mask,
            mask_id=self.mask_id,
            prompt_mask=self.prompt_mask,
            scale=self.cfg_scale,
        )


def _check_options(
    canvas: Tensor,
    eos_id: int | None,
    eos_last: bool,
    cfg_scale: float,
    prompt_mask: Tensor | None,
) -> None:
    if eos_last and eos_id is None:
        raise ValueError("eos_last=True needs eos_id (the end-of-sequence token id)")
    if cfg_scale < 0:
        raise ValueError(f"cfg_scale must be >= 0 (0 is off), got {cfg_scale}")
    if prompt_mask is not None and prompt_mask.shape != canvas.shape:
        raise ValueError(
            f"prompt_mask shape {tuple(prompt_mask.shape)} must equal canvas shape "
            f"{tuple(canvas.shape)}"
        )


@dataclass
class BlockDenoiser:
    """The steps inside one block: choose tokens, score them, commit the best, maybe remask.

    Shared by every decoder that fills a block in several parallel steps (the MDM's semi-
    autoregressive blocks, block diffusion's blocks), so a chooser or remasking strategy works
    with all of them. `forward(canvas) -> (logits (B, L, V), network evaluations)` runs the model
    on the canvas the denoiser is given (the whole canvas, or just the block).
    """

    mask_id: int
    chooser: TokenChooser
    remasking: Remasking
    result: GenerationResult  # nfe is added here
    generator: torch.Generator | None = None
    eos_id: int | None = None
    eos_last: bool = False
    forbid_ids: Sequence[int] = ()
    step_plan: StepPlan = tokens_per_step
    reuse_logits: bool = True
    # Called after every step with (canvas, raw score (B, L), eligible (B, L)): recording.
    on_step: Callable[[Tensor, Tensor, Tensor], None] | None = None

    def run(
        self,
        forward: Callable[[Tensor], tuple[Tensor, int]],
        canvas: Tensor,
        fillable: Tensor,
        generated: Tensor,
        block_steps: int,
        commit_score: Tensor,
        logits: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Fill the masks of `canvas` (B, L) at `fillable` (B, L) bool. -> (canvas, last logits).

        `generated` (B, L) bool: what the decoder fills (tokens there may be remasked);
        `commit_score` (B, L) float32 is updated in place with each commit's confidence;
        `logits` (the eligible rows of the previous call) are reused if the canvas has not
        changed since (None: compute). A block whose planned steps are spent but still has masks
        keeps stepping, at least one commit per step, until it is full.
        """
        lowest = torch.finfo(torch.float32).min
        schedule = self.step_plan(((canvas == self.mask_id) & fillable).sum(dim=1), block_steps)
        carry = torch.zeros(canvas.shape[0], dtype=torch.long, device=canvas.device)  # (B,)
        step = 0
        while True:
            eligible = (canvas == self.mask_id) & fillable  # (B, L)
            if not eligible.any():
                break  # block full: further passes could commit nothing
            if logits is None:
                raw_logits, evaluations = forward(canvas)  # (B, L, V)
                logits = _eligible_logits(raw_logits, eligible, self.mask_id, self.forbid_ids)
                self.result.nfe += evaluations
                self.result.add_row_nfe(eligible.any(dim=1).long() * evaluations)
            # Choices and scores at the masked positions only (N rows): the noise is drawn there.
            chosen = self.chooser.choose(logits, self.generator)  # (N,)
            scored = self.remasking.confidence(logits, chosen, self.generator).float()  # (N,)
            tokens = canvas.masked_scatter(eligible, chosen)  # (B, L)
            raw_score = torch.full(canvas.shape, float("nan"), device=canvas.device)
            raw_score = raw_score.masked_scatter(eligible, scored)  # (B, L), NaN off eligible
            score = raw_score  # (B, L)
            if self.eos_last:
                score = score.masked_fill(tokens == self.eos_id, lowest)
            score = _eligible_scores(score, eligible)  # (B, L)
            planned = schedule[:, step] + carry if step < block_steps else eligible.sum(dim=1)
            count = self.remasking.commit_count(score, eligible, planned)  # (B,)
            if step >= block_steps:
                count = count.clamp_min(1)  # overtime: guarantee progress
            commit = commit_top_k(score, count) & eligible  # (B, L)
            canvas = torch.where(commit, tokens, canvas)
            commit_score.copy_(torch.where(commit, raw_score, commit_score))
            remask = torch.zeros_like(commit)
            if step < block_steps - 1:
                candidates = generated & fillable & (canvas != self.mask_id) & ~commit  # (B, L)
                remask = self.remasking.remask(commit_score, candidates, self.generator)
                remask &= candidates
                canvas = canvas.masked_fill(remask, self.mask_id)
            carry = remask.sum(dim=1)
            if commit.any() or remask.any() or not self.reuse_logits:
                logits = None
            if self.on_step is not None:
                self.on_step(canvas, raw_score, eligible)
            step += 1
        return canvas, logits


def recorder(result: GenerationResult) -> Callable[[Tensor, Tensor, Tensor], None]:
    """An `on_step` that appends the canvas and the step's confidences (NaN off `eligible`)."""

    def record(canvas: Tensor, raw_score: Tensor, eligible: Tensor) -> None:
        result.trajectory.append(canvas.detach().to("cpu", copy=True))
        result.confidences.append(
            raw_score.masked_fill(~eligible, float("nan")).detach().to("cpu", copy=True)
        )

    return record


def _in_canvas(
    record: Callable[[Tensor, Tensor, Tensor], None],
    canvas: Tensor,
    start: int,
    block: Tensor,
    score: Tensor,
    eligible: Tensor,
) -> None:
    """Record a step of the block at `start` (B, n) as the whole canvas (B, L)."""
    end = start + block.shape[1]
    full = canvas.clone()
    full[:, start:end] = block
    scores = torch.full(canvas.shape, float("nan"), device=canvas.device)  # (B, L)
    scores[:, start:end] = score
    chosen = torch.zeros_like(full, dtype=torch.bool)
    chosen[:, start:end] = eligible
    record(full, scores, chosen)


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
    eos_id: int | None = None,
    eos_last: bool = False,
    forbid_ids: Sequence[int] = (),
    cfg_scale: float = 0.0,
    prompt_mask: Tensor | None = None,
    mask_prob: MaskProb | None = None,
    record: bool = False,
    reuse_logits: bool = True,
) -> GenerationResult:
    """Fill the masks in canvas[:, gen_start:] block by block, committing k_s tokens per step.

    canvas (B, L) long, left-padded by the caller; attention_mask (B, L) is passed to logits_fn.
    - k_s: LLaDA's linear rule, or `schedule_tokens_per_step` with `mask_prob` m(t); the remasking
      strategy may override it (`commit_count`, e.g. threshold). A block whose planned steps are
      spent but still has masks keeps stepping, at least one commit per step, until it is full.
    - Remasking strategies may mask committed tokens of the block again (`remask`, e.g. remdm),
      never on a block's last planned step; the next step commits that many more.
    - eos_last: EOS predictions get the lowest confidence, so EOS commits after everything else;
      forbid_ids: those tokens get logit -inf before the choice.
    - cfg_scale w > 0: classifier-free guidance against the canvas with `prompt_mask` positions
      masked (default: every position given at the start, as in LLaDA); see `guided_logits`.
    - A step that changes nothing leaves the canvas as it was, so the next step reuses its logits
      (the model has no time input). A block with no masks costs nothing.
    nfe counts network evaluations per row: 1 per forward pass, 2 per guided pass.
    record=True fills `trajectory` (canvas after each step) and `confidences` (the strategy's raw
    score of each position predicted that step, NaN elsewhere), both on the CPU.
    """
    started = time.perf_counter()
    _check_options(canvas, eos_id, eos_last, cfg_scale, prompt_mask)
    length = canvas.shape[1]
    plan = block_plan(length, gen_start, steps, block_length)
    canvas = canvas.clone()
    positions = torch.arange(length, device=canvas.device)  # (L,)
    # Padding is never filled, even when the tokenizer has no pad token and pads with the mask id.
    visible = (
        torch.ones_like(canvas, dtype=torch.bool)
        if attention_mask is None
        else attention_mask.bool()
    )
    generated = (
        (canvas == mask_id) & (positions >= gen_start) & visible
    )  # (B, L) what this call fills
    if cfg_scale > 0 and prompt_mask is None:
        prompt_mask = canvas != mask_id  # (B, L) everything given is conditioning (LLaDA)
    commit_score = torch.full(canvas.shape, float("nan"), device=canvas.device)  # (B, L)
    result = GenerationResult(tokens=canvas, nfe=0, seconds=0.0)
    denoiser = BlockDenoiser(
        mask_id,
        chooser,
        remasking,
        result,
        generator=generator,
        eos_id=eos_id,
        eos_last=eos_last,
        forbid_ids=forbid_ids,
        step_plan=step_plan_for(mask_prob),
        reuse_logits=reuse_logits,
    )

    forward = CanvasForward(logits_fn, canvas, attention_mask, mask_id, prompt_mask, cfg_scale)
    begin_block = getattr(logits_fn, "begin_block", None)  # e.g. a prefix KV cache
    for start, end, block_steps in plan:
        if begin_block is not None:
            begin_block(start, end)  # the cache refreshes at the block's first pass
        forward.start, forward.end = start, end
        if record:
            denoiser.on_step = partial(_in_canvas, recorder(result), canvas, start)
        # Only the block's columns are denoised: its logits, noise and scores, nothing else.
        block, _ = denoiser.run(
            forward,
            canvas[:, start:end].clone(),
            visible[:, start:end],
            generated[:, start:end],
            block_steps,
            commit_score[:, start:end],
        )
        canvas[:, start:end] = block
    result.tokens = canvas
    result.seconds = time.perf_counter() - started
    return result
