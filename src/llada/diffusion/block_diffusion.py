"""`objective=bd3`: block diffusion (BD3-LM, Arriola et al. 2025).

The sequence is cut into blocks of `block_size` tokens; `log p(x) = sum_b log p(x^b | x^<b)` and
each factor is a masked diffusion model conditioned on the clean blocks before it, with its own
noise level. Training and validation run one pass over [x_t ; x_0] with the block-diffusion
attention pattern (`block_decoding.training_pattern`), the loss on the noisy half. block_size 1
is a left-to-right model, block_size = the sequence is LLaDA's MDM. Decoding is block by block
with an exact KV cache (`block_decoding.BlockDecoder`).

Options beyond BD3-LM's: `zero_mask_prob` (MDLM's SUBS: the mask token is never a prediction, so
block_size 1 is a normalised left-to-right model) and `clip_search`, the data-driven clipped
schedule: on every validation the training-loss variance of each candidate [t_min, t_max] is
measured on the validation batches and the lowest-variance one is used for training from then
on (BD3-LM section 4); the validation bound itself always draws t in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from llada.diffusion.block_decoding import BlockDecoder, training_pattern
from llada.diffusion.noising import sample_times
from llada.diffusion.objective import (
    Batch,
    Objective,
    Patterned,
    RowNLL,
    TrainingLoss,
    anneal_causal,
    annealable,
    logits_at,
)
from llada.diffusion.remasking import LowConfidenceRemasking
from llada.diffusion.sampling import GenerationResult, LogitsFn
from llada.diffusion.token_choice import Greedy

Clip = tuple[float, float]


class BlockDiffusion(Objective):
    """Block diffusion NELBO: per-block masked diffusion, clean previous blocks as context."""

    lm_kind = "block_diffusion"
    attention = "block_causal"
    exact = False
    prefix_cache = False  # its own cache is exact (`kv_cache` option), not the approximate one
    sliding_window = True  # decoding may run past the context

    def __init__(
        self,
        *,
        block_size: int = 16,
        antithetic_time: bool = True,
        zero_mask_prob: bool = True,
        clip_search: Sequence[Sequence[float]] | None = None,
        kv_cache: bool = True,
        causal_anneal_steps: int = 0,
        **ids_and_schedule: Any,
    ) -> None:
        """`causal_anneal_steps` N > 0: training attention inside each block starts causal and
        opens up to the block pattern over the first N steps (for models started from AR ones)."""
        super().__init__(**ids_and_schedule)
        if int(block_size) < 1:
            raise ValueError(f"objective.block_size must be >= 1, got {block_size}")
        self.block_size = int(block_size)
        self.antithetic_time, self.zero_mask_prob = antithetic_time, zero_mask_prob
        self.kv_cache, self.causal_anneal_steps = kv_cache, int(causal_anneal_steps)
        self.clip_search = [self._clip(pair) for pair in clip_search or ()]
        self.clip: Clip | None = None  # chosen by the search; None: the schedule's t range
        self._clip_stats = torch.zeros(len(self.clip_search), 3, dtype=torch.float64)

    @staticmethod
    def _clip(pair: Sequence[float]) -> Clip:
        low, high = (float(value) for value in pair)
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(
                f"objective.clip_search entry {list(pair)} must be [t_min, t_max] with "
                "0 <= t_min < t_max <= 1"
            )
        return low, high

    def options(self) -> dict[str, Any]:
        return {
            "block_size": self.block_size,
            "antithetic_time": self.antithetic_time,
            "zero_mask_prob": self.zero_mask_prob,
            "clip_search": [list(pair) for pair in self.clip_search] or None,
            "kv_cache": self.kv_cache,
            "causal_anneal_steps": self.causal_anneal_steps,
        }

    def state(self) -> dict[str, Any]:
        return {"clip": None if self.clip is None else list(self.clip)}

    def load_state(self, state: dict[str, Any]) -> None:
        clip = state.get("clip")
        self.clip = None if clip is None else self._clip(clip)

    def check_backbone(self, backbone: Any) -> None:
        if getattr(backbone, "causal", False) or not getattr(
            backbone, "supports_attention_pattern", False
        ):
            raise ValueError(
                f"objective=bd3 needs a bidirectional backbone that takes attention patterns "
                f"(forward(..., attention=, positions=)); {type(backbone).__name__} does not: "
                "use the native transformer (model=tiny/small) or model=hf_causal"
            )
        annealable(backbone, self.causal_anneal_steps)
        context = getattr(backbone, "max_len", None)
        if context is not None and self.block_size > context:
            raise ValueError(
                f"objective.block_size={self.block_size} is larger than the model context "
                f"{context}; pick a block size that divides data.block_size"
            )

    def check_generation(self, cfg_scale: float) -> None:
        if cfg_scale > 0:
            raise ValueError(
                "sampler.cfg_scale > 0 is not implemented for objective=bd3; set it to 0"
            )

    def perplexity_label(self) -> str:
        return f"block-diffusion ELBO perplexity (block_size {self.block_size})"

    # ---------------------------------------------------------------- noising
    def _block_times(
        self, rows: int, blocks: int, clip: Clip, generator: torch.Generator | None, device
    ) -> Tensor:
        """t (B, K): one noise level per block; antithetic over all B*K draws, block-major so
        the blocks of one row are spread over [t_min, t_max]."""
        t = sample_times(
            rows * blocks,
            t_min=clip[0],
            t_max=clip[1],
            antithetic=self.antithetic_time,
            generator=generator,
            device=device,
        )  # (K*B,)
        return t.view(blocks, rows).T

    def draw_noise(
        self, maskable: Tensor, clip: Clip, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Per-block t and the masks it draws. maskable (B, L) -> (masked (B, L), t (B, K))."""
        rows, length = maskable.shape
        blocks = -(-length // self.block_size)
        t = self._block_times(rows, blocks, clip, generator, maskable.device)  # (B, K)
        t_token = t.repeat_interleave(self.block_size, dim=1)[:, :length]  # (B, L)
        draws = torch.rand(maskable.shape, generator=generator, device=maskable.device)
        return (draws < self.schedule.mask_prob(t_token)) & maskable, t

    def block_nll(
        self,
        backbone: LogitsFn,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        masked: Tensor,
        t: Tensor,
        anneal: bool = False,
    ) -> Tensor:
        """w(t_b)-weighted -log p of the masked tokens, summed per block, in one pass over
        [x_t ; x_0] with the block-diffusion pattern. -> (B, K)."""
        rows, length = input_ids.shape
        size, blocks = self.block_size, t.shape[1]
        t_token = t.repeat_interleave(size, dim=1)[:, :length]  # (B, L)
        noisy = input_ids.masked_fill(masked, self.mask_id)
        both = torch.cat([noisy, input_ids], dim=1)  # (B, 2L)
        keys = None if attention_mask is None else attention_mask.repeat(1, 2)  # (B, 2L)
        positions = torch.arange(length, device=input_ids.device).repeat(2)  # (2L,)
        pattern = training_pattern(length, size, input_ids.device)  # (2L, 2L)
        if anneal and self.step < self.causal_anneal_steps:
            pattern = anneal_causal(pattern, self.step, self.causal_anneal_steps, positions)
        scored = torch.cat([masked, torch.zeros_like(masked)], dim=1)  # (B, 2L)
        logits = logits_at(
            Patterned(backbone, pattern, positions), both, keys, scored
        ).float()  # (N, V)
        if self.zero_mask_prob and 0 <= self.mask_id < logits.shape[-1]:
            logits = logits.index_fill(
                1, masked.new_tensor([self.mask_id], dtype=torch.long), float("-inf")
            )
        nll = F.cross_entropy(logits, input_ids[masked], reduction="none")  # (N,)
        weighted = nll * self.schedule.loss_weight(t_token)[masked]  # (N,)
        where = masked.nonzero()  # (N, 2) row, position
        flat = where[:, 0] * blocks + where[:, 1] // size  # (N,) row-major block index
        summed = torch.zeros(rows * blocks, device=nll.device).index_add_(0, flat, weighted)
        return summed.view(rows, blocks)

    def weighted_nll(
        self,
        backbone: LogitsFn,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        generator: torch.Generator | None,
        clip: Clip,
        prompt_mask: Tensor | None = None,
        anneal: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One draw of the NELBO integrand. -> (block_nll (B, K), block_slots (B, K), t (B, K)).

        Padding and (SFT) prompt tokens are never masked nor counted as slots.
        """
        maskable = torch.ones_like(input_ids, dtype=torch.bool)  # (B, L)
        if attention_mask is not None:
            maskable &= attention_mask.bool()
        if prompt_mask is not None:
            maskable &= ~prompt_mask.bool()
        masked, t = self.draw_noise(maskable, clip, generator)
        nll = self.block_nll(backbone, input_ids, attention_mask, masked, t, anneal)
        padded = F.pad(maskable, (0, t.shape[1] * self.block_size - input_ids.shape[1]))
        slots = padded.view(input_ids.shape[0], t.shape[1], self.block_size).sum(dim=2)
        return nll, slots.float(), t

    # ---------------------------------------------------------------- training
    def training_range(self) -> Clip:
        return self.clip or (self.schedule.t_min, self.schedule.t_max)

    def training_loss(self, backbone: LogitsFn, batch: Batch) -> TrainingLoss:
        """Per-token NELBO (sum over blocks / token slots); SFT rows per response length."""
        prompt_mask = batch.get("prompt_mask")
        block_nll, block_slots, t = self.weighted_nll(
            backbone,
            batch["input_ids"],
            batch.get("attention_mask"),
            None,
            self.training_range(),
            prompt_mask,
            anneal=True,
        )
        row_nll, row_slots = block_nll.sum(dim=1), block_slots.sum(dim=1)  # (B,)
        row_loss = row_nll / row_slots.clamp_min(1.0)  # (B,)
        logs = {"train/loss_var": row_loss.detach().var()} if row_loss.numel() > 1 else {}
        if prompt_mask is not None:
            return TrainingLoss(row_loss.mean(), logs=logs)
        has_slots = block_slots > 0  # (B, K)
        loss = row_nll.sum() / row_slots.sum()
        return TrainingLoss(
            loss,
            row_loss=(block_nll / block_slots.clamp_min(1.0))[has_slots],
            t=t[has_slots],
            tokens=row_slots.sum(),
            logs=logs,
        )

    def validation_nll(
        self, backbone: LogitsFn, batch: Batch, generator: torch.Generator
    ) -> RowNLL:
        """The NELBO with t ~ U[0, 1] per block (a bound whatever range training used); with
        `clip_search`, each candidate range's training-loss variance is measured on the batch."""
        ids, attention, prompt = (
            batch["input_ids"],
            batch.get("attention_mask"),
            batch.get("prompt_mask"),
        )
        for index, clip in enumerate(self.clip_search):
            block_nll, block_slots, _ = self.weighted_nll(
                backbone, ids, attention, generator, clip, prompt
            )
            row = (block_nll.sum(1) / block_slots.sum(1).clamp_min(1.0)).double().cpu()  # (B,)
            moments = torch.stack([row.new_tensor(float(row.numel())), row.sum(), (row**2).sum()])
            self._clip_stats[index] += moments
        block_nll, block_slots, _ = self.weighted_nll(
            backbone, ids, attention, generator, (0.0, 1.0), prompt
        )
        return RowNLL(block_nll.sum(dim=1), block_slots.sum(dim=1))

    def validation_summary(self, apply: bool = True) -> dict[str, float]:
        """After a validation: each candidate's loss variance, and the range now in use."""
        if not self.clip_search or self._clip_stats[:, 0].min() < 2:
            self._clip_stats.zero_()
            return {}
        count, total, squares = self._clip_stats.unbind(dim=1)
        variance = (squares - total**2 / count) / (count - 1)  # (G,) unbiased, across rows
        self._clip_stats.zero_()
        best = self.clip_search[int(variance.argmin())]
        if apply:
            self.clip = best
        logs = {
            f"val/loss_var/t{low:g}-{high:g}": float(value)
            for (low, high), value in zip(self.clip_search, variance.tolist(), strict=True)
        }
        return {**logs, "val/clip_t_min": best[0], "val/clip_t_max": best[1]}

    # -------------------------------------------------------------- likelihood
    def log_likelihood(
        self,
        backbone: LogitsFn,
        pairs: list[tuple[Tensor, Tensor]],
        *,
        mc_samples: int,
        batch_size: int,
        seed: int,
    ) -> tuple[Tensor, Tensor]:
        """NELBO lower bound on log p(answer | prompt): the answer's blocks noised, the prompt
        clean; `mc_samples` draws of per-block t (antithetic), seeded afresh for each pair."""
        values, errors = [], []
        for prompt_ids, answer_ids in pairs:
            value, error = self._pair_bound(
                backbone,
                prompt_ids,
                answer_ids,
                mc_samples,
                batch_size,
                torch.Generator(answer_ids.device).manual_seed(seed),
            )
            values.append(value)
            errors.append(error)
        return torch.stack(values), torch.stack(errors)

    def _pair_bound(
        self,
        backbone: LogitsFn,
        prompt_ids: Tensor,
        answer_ids: Tensor,
        mc_samples: int,
        batch_size: int,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor]:
        """(mean, standard error) of -NELBO over `mc_samples` draws, `batch_size` per pass."""
        ids = torch.cat([prompt_ids, answer_ids])[None].expand(mc_samples, -1)  # (S, P + T)
        maskable = torch.ones_like(ids, dtype=torch.bool)
        maskable[:, : prompt_ids.numel()] = False  # the prompt stays clean
        # All draws first, then the passes: the estimate does not depend on `batch_size`.
        masked, t = self.draw_noise(maskable, (0.0, 1.0), generator)  # (S, P + T), (S, K)
        draws = [
            -self.block_nll(
                backbone, ids[first : first + batch_size], None,
                masked[first : first + batch_size], t[first : first + batch_size],
            ).sum(dim=1)
            for first in range(0, mc_samples, batch_size)
        ]  # fmt: skip
        values = torch.cat(draws).double()  # (mc_samples,)
        error = values.std() / math.sqrt(values.numel()) if values.numel() > 1 else values[0] * 0
        return values.mean().float(), error.float()

    def score(
        self,
        backbone: LogitsFn,
        context: Tensor,
        answer: Tensor,
        *,
        mc_samples: int,
        batch_size: int,
        generator: torch.Generator | None,
        greedy_check: str,
    ) -> tuple[float, bool]:
        """The NELBO bound, and whether greedy block decoding of [context | MASK * T] gives the
        answer (`one_pass`: one step per block; `decode`: one token per step)."""
        value, _ = self._pair_bound(backbone, context, answer, mc_samples, batch_size, generator)
        if greedy_check == "none":
            return float(value), False
        canvas = torch.cat([context, torch.full_like(answer, self.mask_id)])[None]  # (1, P + T)
        result = self.decode(
            backbone,
            canvas,
            steps=1 if greedy_check == "one_pass" else self.block_size,
            chooser=Greedy(),
            remasking=LowConfidenceRemasking(),
            gen_start=context.numel(),
        )
        return float(value), bool(torch.equal(result.tokens[0, -answer.numel() :], answer))

    # --------------------------------------------------------------- decoding
    def decode(self, logits_fn: LogitsFn, canvas: Tensor, **options: Any) -> GenerationResult:
        """Block by block with the exact KV cache (recomputing the window instead where the
        backbone has no cache or uses token shift; the tokens are the same); `steps` per block.
        Options the block decoder does not take (block_length, CFG's prompt_mask) do not apply."""
        decoder = BlockDecoder(
            logits_fn,
            self.mask_id,
            self.block_size,
            getattr(logits_fn, "max_len", None),
            use_cache=self.kv_cache and block_cache_fits(logits_fn),
        )
        taken = (
            "attention_mask", "gen_start", "generator", "eos_id", "eos_last", "forbid_ids",
            "mask_prob", "record",
        )  # fmt: skip
        return decoder(
            canvas,
            steps=options["steps"],
            chooser=options["chooser"],
            remasking=options["remasking"],
            **{key: options[key] for key in taken if key in options},
        )


def block_cache_fits(logits_fn: LogitsFn) -> bool:
    """The exact cache needs the native cache hooks, and a shift-free reading of the outputs
    (with token shift a block's first prediction is the output of a cached position)."""
    backbone = getattr(logits_fn, "backbone", logits_fn)
    return hasattr(backbone, "new_block_cache") and not getattr(backbone, "token_shift", False)
