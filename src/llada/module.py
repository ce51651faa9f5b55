"""`DiffusionLM`: the LightningModule that trains a mask predictor with the LLaDA ELBO and samples from it.

It receives built parts (backbone, tokenizer, masking schedule, optimizer factory) and never the raw
config; what it needs to rebuild itself is written into every checkpoint, so a `.ckpt` is
self-contained and loads with `torch.load(weights_only=True)` (no code runs from the file).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, SumMetric
from transformers import PreTrainedTokenizerBase

from llada.data.tokenizer import eos_id, tokenizer_from_state, tokenizer_to_state
from llada.diffusion.likelihood import conditional_log_likelihood, elbo_bucket_index
from llada.diffusion.losses import masked_nll_per_row
from llada.diffusion.noising import noise_batch
from llada.diffusion.remasking import make_remasking
from llada.diffusion.sampling import GenerationResult, generate
from llada.diffusion.schedules import LinearSchedule, MaskingSchedule
from llada.diffusion.sft import drop_prompt_for_cfg, sft_loss
from llada.diffusion.token_choice import make_token_chooser
from llada.ema import EMA_KEY
from llada.models.prefix_cache import PrefixCachedLogits

CHECKPOINT_KEY = "llada"
MASK_SLOT = re.compile(r"\[MASK\](?:x(\d+))?")  # infilling slots: [MASK] or [MASK]x5
CHECKPOINT_FORMAT = 1

DEFAULT_GENERATION: dict[str, Any] = {
    "sampler": "multinomial",
    "remasking": "low_confidence",
    "n_tokens": 64,
    "steps": 64,
    "block_length": None,
    "temperature": 1.0,
    "top_k": None,
    "top_p": None,
    "cfg_scale": 0.0,  # classifier-free guidance weight w (LLaDA's (w + 1) convention); 0 = off
    "eos_last": False,  # EOS predictions commit last
    "forbid_eos": False,  # never generate EOS
    "remasking_options": {},  # e.g. {"threshold": 0.9} for remasking="threshold"
    "kv_cache": False,  # approximate prefix KV cache across a block's steps (native backbone)
    "schedule_steps": False,  # tokens per step from the masking schedule (non-linear schedules)
}


def token_chooser(options: dict[str, Any]) -> Any:
    """The token chooser ("sampler") that generation options name, with its sampling options."""
    return make_token_chooser(
        options["sampler"],
        temperature=options["temperature"],
        top_k=options["top_k"],
        top_p=options["top_p"],
    )


@dataclass
class Generation:
    """Texts plus what a researcher reports with them."""

    prompts: list[str | None]
    texts: list[str]
    tokens: Tensor  # (B, n_tokens) generated ids
    nfe: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    trajectory: list[Tensor] = field(default_factory=list)  # canvas per step when record=True

    @property
    def tokens_per_second(self) -> float:
        return self.tokens.numel() / max(self.seconds, 1e-9)


class DiffusionLM(L.LightningModule):
    """Masked diffusion LM: `forward(input_ids, attention_mask) -> logits (B, L, V)`."""

    lm_kind = "diffusion"  # written into checkpoints: which class rebuilds the model

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        schedule: MaskingSchedule | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        lr_scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        generation: dict[str, Any] | None = None,
        antithetic_time: bool = True,
        random_length_prob: float = 0.01,
        val_mc_samples: int = 1,
        val_seed: int = 1234,
        weight_decay: float = 0.1,
        loss_buckets: int = 10,
        cfg_prompt_dropout: float = 0.0,
        nonfinite_loss: str = "stop",
        compile_backbone: bool = False,
    ) -> None:
        super().__init__()
        if tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no mask token; add one with ensure_mask_token()")
        self.backbone, self.tokenizer = backbone, tokenizer
        self.schedule = schedule or LinearSchedule()
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self.generation_defaults = {**DEFAULT_GENERATION, **(generation or {})}
        self._check_generation(self.generation_defaults)  # bad settings fail before training
        self.antithetic_time, self.random_length_prob = antithetic_time, random_length_prob
        self.val_mc_samples, self.val_seed = val_mc_samples, val_seed
        self.weight_decay = weight_decay
        self.mask_id = int(tokenizer.mask_token_id)
        self.pad_id = tokenizer.pad_token_id
        self.loss_buckets, self.cfg_prompt_dropout = loss_buckets, cfg_prompt_dropout
        if nonfinite_loss not in ("stop", "skip"):
            raise ValueError(
                f"module.nonfinite_loss must be 'stop' or 'skip', got {nonfinite_loss!r}"
            )
        self.nonfinite_loss = nonfinite_loss
        self.compile_backbone = compile_backbone
        self.last_validated_step = -1  # lets the train entry add a final validation if needed
        # The run's resolved data config (set by the train entry), kept in checkpoints so that
        # `llada.eval` can rebuild the validation split a checkpoint was trained against.
        self.data_config: dict[str, Any] | None = None
        # Kept on the device so the training step never waits for the GPU: tokens seen (per
        # process; restored on resume) and the row-weighted loss by t-bucket over the epoch.
        self.register_buffer("_tokens_seen", torch.zeros((), dtype=torch.long), persistent=False)
        self.loss_by_t = nn.ModuleList(
            MeanMetric(nan_strategy="disable") for _ in range(max(loss_buckets, 0))
        )
        self.val_nll, self.val_slots = SumMetric(), SumMetric()
        self.val_row_sum, self.val_row_sq, self.val_rows = SumMetric(), SumMetric(), SumMetric()

    @property
    def tokens_seen(self) -> int:
        return int(self._tokens_seen)

    # ------------------------------------------------------------------ model
    def setup(self, stage: str) -> None:
        """`module.compile_backbone`: torch.compile the backbone in place for training.

        In place (`nn.Module.compile`), so parameter names and checkpoints are unchanged.
        """
        if self.compile_backbone and stage == "fit":
            self.backbone.compile()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.backbone(input_ids, attention_mask)  # (B, L, V)

    def _weighted_nll(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        generator: torch.Generator | None,
        full_range: bool = False,
        prompt_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One draw of the ELBO integrand. Returns (row_nll (B,), row_slots (B,), t (B,)).

        Padding and (for SFT batches) prompt tokens are never masked nor counted as slots.
        """
        maskable = attention_mask.bool() if attention_mask is not None else None
        if prompt_mask is not None:
            visible = maskable if maskable is not None else torch.ones_like(prompt_mask.bool())
            maskable = visible & ~prompt_mask.bool()
        noisy, masked, t = noise_batch(
            input_ids,
            self.schedule,
            self.mask_id,
            maskable=maskable,
            antithetic=self.antithetic_time,
            full_range=full_range,
            generator=generator,
        )
        if getattr(self.backbone, "supports_output_mask", False):
            masked_logits = self.backbone(noisy, attention_mask, output_mask=masked)  # (N, V)
        else:
            masked_logits = self(noisy, attention_mask)[masked]  # (N, V)
        nll = masked_nll_per_row(masked_logits, input_ids, masked)  # (B,)
        row_nll = nll * self.schedule.loss_weight(t)  # (B,)
        length = input_ids.shape[1]
        slots = maskable.sum(dim=1) if maskable is not None else torch.full_like(t, length)
        return row_nll, slots.float(), t

    def _maybe_random_length(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """LLaDA: with a small probability train on a random prefix length, so short inputs work."""
        length = batch["input_ids"].shape[1]
        if self.random_length_prob <= 0 or torch.rand(()).item() >= self.random_length_prob:
            return batch
        cut = int(torch.randint(1, length + 1, ()).item())
        return {key: value[:, :cut] for key, value in batch.items()}

    # --------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        loss = self._sft_step(batch) if "prompt_mask" in batch else self._pretraining_step(batch)
        return self._guard_nonfinite(loss)

    def _guard_nonfinite(self, loss: Tensor) -> Tensor | None:
        """NaN/inf loss: stop with a clear error (the last good checkpoint stays) or skip the step."""
        if bool(torch.isfinite(loss)):
            return loss
        if self.nonfinite_loss == "skip":
            self.log("train/skipped_nonfinite", 1.0, reduce_fx="sum", on_step=False, on_epoch=True)
            return None  # Lightning skips the optimizer step
        raise FloatingPointError(
            f"loss is {loss.item()} at step {self.global_step}; the last good checkpoint is kept "
            "(lower optim.optimizer.lr, or module.nonfinite_loss=skip to skip such steps)"
        )

    def _pretraining_step(self, batch: dict[str, Tensor]) -> Tensor:
        batch = self._maybe_random_length(batch)
        row_nll, slots, t = self._weighted_nll(
            batch["input_ids"], batch.get("attention_mask"), None
        )
        loss = row_nll.sum() / slots.sum()  # LLaDA eq. 3: per-token ELBO in nats
        self.log("train/loss", loss, prog_bar=True)
        self._log_loss_by_t(row_nll / slots, t)
        self._tokens_seen += slots.sum().long()
        self.log("train/tokens_seen", self._tokens_seen.float())
        return loss

    def _sft_step(self, batch: dict[str, Tensor]) -> Tensor:
        """SFT (LLaDA eq. 5): the prompt is never masked; per-row response-length normalisation."""
        input_ids, prompt_mask = batch["input_ids"], batch["prompt_mask"].bool()
        if self.cfg_prompt_dropout > 0:
            input_ids = drop_prompt_for_cfg(
                input_ids, prompt_mask, self.mask_id, self.cfg_prompt_dropout
            )
        loss = sft_loss(
            self,
            input_ids,
            prompt_mask,
            self.mask_id,
            self.schedule,
            attention_mask=batch.get("attention_mask"),
            antithetic=self.antithetic_time,
        )
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _log_loss_by_t(self, per_token: Tensor, t: Tensor) -> None:
        """Weighted loss per token by noise-level bucket: where the model is good or poor."""
        if self.loss_buckets <= 0:
            return
        buckets = elbo_bucket_index(t.detach(), self.loss_buckets)  # (B,)
        values = per_token.detach().float()  # (B,)
        sums = torch.zeros(self.loss_buckets, device=values.device).index_add_(0, buckets, values)
        counts = torch.bincount(buckets, minlength=self.loss_buckets).float()  # (n,)
        means = sums / counts.clamp_min(1.0)  # (n,); empty buckets get weight 0 below
        width = 1 / self.loss_buckets
        for bucket, metric in enumerate(self.loss_by_t):
            metric.update(means[bucket], weight=counts[bucket])
            name = f"train_loss_by_t/{bucket * width:.1f}-{(bucket + 1) * width:.1f}"
            self.log(name, metric, on_step=False, on_epoch=True)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """K Monte-Carlo draws of the ELBO with a generator seeded per batch: reproducible."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.val_seed + batch_idx)
        for _ in range(self.val_mc_samples):
            row_nll, slots, _ = self._weighted_nll(
                batch["input_ids"],
                batch.get("attention_mask"),
                generator,
                full_range=True,
                prompt_mask=batch.get("prompt_mask"),
            )
            per_token = row_nll / slots.clamp_min(1.0)  # (B,)
            self.val_nll.update(row_nll.sum())
            self.val_slots.update(slots.sum())
            self.val_row_sum.update(per_token.sum())
            self.val_row_sq.update((per_token**2).sum())
            self.val_rows.update(per_token.numel())

    def on_validation_epoch_end(self) -> None:
        slots = self.val_slots.compute()
        if slots <= 0:
            return
        elbo = self.val_nll.compute() / slots
        rows = self.val_rows.compute()
        mean = self.val_row_sum.compute() / rows
        variance = (self.val_row_sq.compute() / rows - mean**2).clamp_min(0.0)
        stderr = torch.sqrt(variance / rows.clamp_min(2.0))
        self.log_dict(
            {"val/elbo": elbo, "val/ppl": torch.exp(elbo), "val/elbo_stderr": stderr},
            prog_bar=True,
        )
        if not self.trainer.sanity_checking:
            self.last_validated_step = self.global_step
        for metric in (
            self.val_nll,
            self.val_slots,
            self.val_row_sum,
            self.val_row_sq,
            self.val_rows,
        ):
            metric.reset()

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError("DiffusionLM was built without an optimizer; pass optimizer=...")
        from llada.optim import decay_groups

        optimizer = self.optimizer_factory(decay_groups(self.backbone, self.weight_decay))
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ------------------------------------------------------------- generation
    @property
    def context_length(self) -> int | None:
        return getattr(self.backbone, "max_len", None)

    @property
    def prefix_ids(self) -> list[int]:
        """Ids put before every prompt or template (none here; the AR baseline's start token)."""
        return []

    def _canvas(self, prompts: list[str], n_tokens: int) -> tuple[Tensor, Tensor]:
        """Left-padded [prompt | MASK * n_tokens]. Returns (canvas (B, L), attention_mask (B, L))."""
        encoded = [
            self.prefix_ids + self.tokenizer.encode(p, add_special_tokens=False) for p in prompts
        ]
        width = max(len(ids) for ids in encoded) + n_tokens
        limit = self.context_length
        if limit is not None and width > limit:
            raise ValueError(
                f"prompt ({width - n_tokens} tokens) + n_tokens ({n_tokens}) = {width} exceeds the "
                f"model context of {limit} tokens; shorten the prompt or lower n_tokens"
            )
        pad = self.pad_id if self.pad_id is not None else self.mask_id
        canvas = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            start = width - n_tokens - len(ids)
            canvas[row, start : width - n_tokens] = torch.tensor(ids, dtype=torch.long)
            attention[row, start:] = 1
        canvas[:, width - n_tokens :] = self.mask_id
        return canvas.to(self.device), attention.to(self.device)

    def _decode(self, generated: Tensor, stop_at_eos: bool) -> list[str]:
        eos = eos_id(self.tokenizer)
        texts = []
        for row in generated.tolist():
            if stop_at_eos and eos in row:
                row = row[: row.index(eos)]
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts

    @staticmethod
    def _check_generation(options: dict[str, Any]) -> None:
        """Build the chooser and remasking once and range-check the step plan."""
        unknown = set(options) - set(DEFAULT_GENERATION)
        if unknown:
            raise TypeError(
                f"unknown generation option(s) {sorted(unknown)}; allowed: {sorted(DEFAULT_GENERATION)}"
            )
        for key in ("steps", "n_tokens"):
            if int(options[key]) < 1:
                raise ValueError(f"sampler.{key} must be >= 1, got {options[key]}")
        if options["block_length"] is not None and int(options["block_length"]) < 1:
            raise ValueError(
                f"sampler.block_length must be >= 1 or null, got {options['block_length']}"
            )
        if float(options["cfg_scale"]) < 0:
            raise ValueError(f"sampler.cfg_scale must be >= 0, got {options['cfg_scale']}")
        token_chooser(options)
        make_remasking(options["remasking"], **(options["remasking_options"] or {}))

    def _options(self, n_tokens: int | None, settings: dict[str, Any]) -> dict[str, Any]:
        """The run's generation defaults overridden by the settings the call passed."""
        # Only keys the caller passed override; an explicit None means "none" (block_length=None
        # is one block, top_k=None no top-k), never "use the default".
        options = {**self.generation_defaults, **settings}
        if n_tokens is not None:
            options["n_tokens"] = n_tokens
        self._check_generation(options)
        return options

    def _generator(self, seed: int | None) -> torch.Generator | None:
        """A seeded generator on the model's device (None: the global RNG)."""
        return None if seed is None else torch.Generator(device=self.device).manual_seed(seed)

    def _reverse(
        self,
        canvas: Tensor,
        attention: Tensor,
        prompt_mask: Tensor,
        gen_start: int,
        options: dict[str, Any],
        seed: int | None,
        record: bool,
    ) -> GenerationResult:
        """Run the reverse process on a prepared canvas (B, L) with the given options."""
        chooser = token_chooser(options)
        remasking = make_remasking(options["remasking"], **(options["remasking_options"] or {}))
        generator = self._generator(seed)
        eos = eos_id(self.tokenizer)
        was_training = self.training
        self.eval()
        logits_fn = PrefixCachedLogits(self.backbone) if options["kv_cache"] else self
        try:
            return generate(
                logits_fn,
                canvas,
                self.mask_id,
                steps=int(options["steps"]),
                chooser=chooser,
                remasking=remasking,
                attention_mask=attention if not bool(attention.all()) else None,
                block_length=options["block_length"],
                gen_start=gen_start,
                generator=generator,
                eos_id=eos,
                eos_last=bool(options["eos_last"]),
                forbid_ids=(eos,) if options["forbid_eos"] else (),
                cfg_scale=float(options["cfg_scale"]),
                prompt_mask=prompt_mask,
                record=record,
                mask_prob=self.schedule.mask_prob if options["schedule_steps"] else None,
            )
        finally:
            self.train(was_training)

    @torch.no_grad()
    def generate_with_info(
        self,
        prompt: str | list[str] | None = None,
        n_tokens: int | None = None,
        *,
        num_samples: int = 1,
        seed: int | None = None,
        stop_at_eos: bool = True,
        record: bool = False,
        **settings: Any,
    ) -> Generation:
        """Like `generate`, plus the ids, NFE (forward passes), wall seconds and settings used."""
        options = self._options(n_tokens, settings)
        prompts = [prompt] * num_samples if isinstance(prompt, str) or prompt is None else prompt
        prompts = ["" if p is None else p for p in prompts]
        n_tokens = int(options["n_tokens"])
        canvas, attention = self._canvas(prompts, n_tokens)
        gen_start = canvas.shape[1] - n_tokens
        prompt_mask = attention.bool().clone()  # (B, L): the real prompt tokens
        prompt_mask[:, gen_start:] = False
        result = self._reverse(canvas, attention, prompt_mask, gen_start, options, seed, record)
        generated = result.tokens[:, gen_start:]  # (B, n_tokens)
        return Generation(
            prompts=[p or None for p in prompts],
            texts=self._decode(generated, stop_at_eos),
            tokens=generated.cpu(),
            nfe=result.nfe,
            seconds=result.seconds,
            settings=options,
            trajectory=result.trajectory,
        )

    def _template_ids(self, template: str) -> list[int]:
        """Token ids of a template whose `[MASK]` or `[MASK]xN` slots become N mask tokens."""
        ids: list[int] = []
        pieces = MASK_SLOT.split(template)  # text, count, text, count, ..., text
        for index, piece in enumerate(pieces):
            if index % 2:
                ids.extend([self.mask_id] * int(piece or 1))
            elif piece.strip():
                ids.extend(self.tokenizer.encode(piece.strip(), add_special_tokens=False))
        return ids

    @torch.no_grad()
    def infill_with_info(
        self,
        template: str | list[str],
        *,
        seed: int | None = None,
        record: bool = False,
        **settings: Any,
    ) -> Generation:
        """Fill `[MASK]xN` slots anywhere in a text (any order: the masks may precede the text).

        Returns the whole filled texts. Blocks default to one (no left-to-right bias).
        """
        templates = [template] if isinstance(template, str) else list(template)
        encoded = [self._template_ids(t) for t in templates]
        return self.infill_ids(encoded, seed=seed, record=record, prompts=templates, **settings)

    @torch.no_grad()
    def infill_ids(
        self,
        encoded: list[list[int]],
        *,
        seed: int | None = None,
        record: bool = False,
        prompts: list[str] | None = None,
        **settings: Any,
    ) -> Generation:
        """Fill the mask ids of token-id rows. `tokens` (B, W) is the left-padded filled canvas:
        row b's ids (after `prefix_ids`) are its last len(prefix_ids) + len(encoded[b]) columns.
        """
        options = self._options(None, settings)
        # One block unless asked: the run's left-to-right blocks do not fit masks anywhere.
        options["block_length"] = settings.get("block_length")
        encoded = [self.prefix_ids + list(ids) for ids in encoded]
        if not any(self.mask_id in ids for ids in encoded):
            raise ValueError("the template has no [MASK] slot; write e.g. 'The [MASK]x5 sat'")
        width = max(len(ids) for ids in encoded)
        limit = self.context_length
        if limit is not None and width > limit:
            raise ValueError(f"template has {width} tokens, more than the context of {limit}")
        pad = self.pad_id if self.pad_id is not None else self.mask_id
        canvas = torch.full((len(encoded), width), pad, dtype=torch.long)
        attention = torch.zeros_like(canvas)
        for row, ids in enumerate(encoded):
            canvas[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        canvas, attention = canvas.to(self.device), attention.to(self.device)
        prompt_mask = attention.bool() & (canvas != self.mask_id)
        result = self._reverse(canvas, attention, prompt_mask, 0, options, seed, record)
        filled = [
            self.tokenizer.decode(ids[mask.bool()].tolist(), skip_special_tokens=True).strip()
            for ids, mask in zip(result.tokens.cpu(), attention.cpu(), strict=True)
        ]
        return Generation(
            prompts=list(prompts) if prompts is not None else [None] * len(encoded),
            texts=filled,
            tokens=result.tokens.cpu(),
            nfe=result.nfe,
            seconds=result.seconds,
            settings=options,
            trajectory=result.trajectory,
        )

    def infill(self, template: str | list[str], **kwargs: Any) -> str | list[str]:
        """`m.infill("The [MASK]x5 sat on the mat")` -> the filled text (a list for a list)."""
        out = self.infill_with_info(template, **kwargs)
        return out.texts[0] if isinstance(template, str) else out.texts

    def generate(
        self, prompt: str | list[str] | None = None, n_tokens: int | None = None, **kwargs: Any
    ) -> str | list[str]:
        """Text after the prompt: a str for one prompt (or None), a list for a list of prompts.

        Options (defaults from the run's `sampler`/`remasking` config): steps, block_length,
        sampler="greedy"|"multinomial", remasking="low_confidence"|"random"|"margin"|"entropy"|
        "threshold"|"remdm" (+ remasking_options={...}), temperature, top_k, top_p, cfg_scale,
        eos_last, forbid_eos, seed, num_samples (a list when > 1).
        """
        out = self.generate_with_info(prompt, n_tokens, **kwargs)
        single = not isinstance(prompt, list) and kwargs.get("num_samples", 1) == 1
        return out.texts[0] if single else out.texts

    # ------------------------------------------------------------- likelihood
    @torch.no_grad()
    def log_likelihood(
        self,
        prompt: str | list[str],
        answer: str | list[str],
        mc_samples: int = 128,
        batch_size: int = 32,
        seed: int = 0,
        return_stderr: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Lower bound on log p(answer | prompt) in nats per pair (LLaDA eq. 6, stratified l).

        Exact (one forward pass) when the answer is one token. Prompt and answer are tokenized
        without special tokens. Returns a (N,) tensor (and its standard errors if asked).
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        answers = [answer] if isinstance(answer, str) else list(answer)
        if len(prompts) != len(answers):
            raise ValueError(f"got {len(prompts)} prompts but {len(answers)} answers")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        was_training = self.training
        self.eval()
        values, errors = [], []
        try:
            for prompt_text, answer_text in zip(prompts, answers, strict=True):
                ids = [
                    torch.tensor(
                        self.tokenizer.encode(text, add_special_tokens=False), dtype=torch.long
                    )
                    for text in (prompt_text, answer_text)
                ]
                if ids[1].numel() == 0:
                    raise ValueError(f"answer {answer_text!r} has no tokens")
                value, stderr = conditional_log_likelihood(
                    self,
                    ids[0].to(self.device),
                    ids[1].to(self.device),
                    self.mask_id,
                    mc_samples=mc_samples,
                    batch_size=batch_size,
                    generator=generator,
                )
                values.append(value)
                errors.append(stderr)
        finally:
            self.train(was_training)
        result = torch.stack(values).cpu()
        return (result, torch.stack(errors).cpu()) if return_stderr else result

    # ----------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not hasattr(self.backbone, "recipe"):
            raise TypeError(f"{type(self.backbone).__name__} needs a recipe() to be checkpointed")
        checkpoint[CHECKPOINT_KEY] = {
            "format": CHECKPOINT_FORMAT,
            "lm": self.lm_kind,
            "backbone": self.backbone.recipe(),
            "tokenizer": tokenizer_to_state(self.tokenizer),
            "masking": self.schedule.recipe(),
            "generation": dict(self.generation_defaults),
            "tokens_seen": self.tokens_seen,
            "data": self.data_config,
            # The masking draws use the global RNG: restoring it makes a resumed run exact.
            "torch_rng_state": torch.get_rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(CHECKPOINT_KEY, {})
        self._tokens_seen.fill_(int(meta.get("tokens_seen", 0)))
        if "torch_rng_state" in meta:
            torch.set_rng_state(meta["torch_rng_state"].cpu())

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path,
        map_location: str | torch.device = "cpu",
        use_ema: bool = True,
        **kwargs: Any,
    ) -> DiffusionLM:
        """Rebuild a model from a `.ckpt` alone. Safe: tensors and plain data only, no pickled code.

        With `use_ema` (default) the averaged weights are loaded when the run kept an EMA.
        """
        path = Path(checkpoint_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"checkpoint not found: {path} (pass the path of a .ckpt written by llada.train)"
            )
        try:
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as error:  # torch raises several types for truncated / foreign files
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ValueError(
                f"cannot load checkpoint {path}: {type(error).__name__}: {first_line[:200]} "
                "(truncated, corrupt, or not a plain-data llada checkpoint)"
            ) from None
        meta = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
        if meta is None:
            raise ValueError(f"{path} is not a llada checkpoint (no '{CHECKPOINT_KEY}' section)")
        backbone = hydra.utils.instantiate(meta["backbone"])
        model = lm_class(meta.get("lm", "diffusion"))(
            backbone=backbone,
            tokenizer=tokenizer_from_state(meta["tokenizer"]),
            schedule=hydra.utils.instantiate(meta["masking"]),
            generation=meta["generation"],
            **kwargs,
        )
        model.load_state_dict(checkpoint["state_dict"])
        model.data_config = meta.get("data")
        model._tokens_seen.fill_(int(meta.get("tokens_seen", 0)))
        if use_ema and EMA_KEY in checkpoint:
            model.load_state_dict(checkpoint[EMA_KEY], strict=False)
        return model.to(map_location).eval()


def lm_class(kind: str) -> type[DiffusionLM]:
    """The LightningModule class for a kind of LM ("diffusion" or "autoregressive")."""
    from llada.autoregressive import AutoregressiveLM  # imports this module

    classes: dict[str, type[DiffusionLM]] = {
        "diffusion": DiffusionLM,
        "autoregressive": AutoregressiveLM,
    }
    if kind not in classes:
        raise ValueError(f"unknown LM kind {kind!r} in checkpoint; allowed: {', '.join(classes)}")
    return classes[kind]
