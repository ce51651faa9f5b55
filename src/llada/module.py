"""`DiffusionLM`: the one LightningModule, for every objective (mdm, ar, ...).

It receives built parts (backbone, tokenizer, objective, optimizer factory) and never the raw
config. The objective owns the maths (loss, bound, likelihood, decoder); this file owns the
Lightning side: steps, logging, optimizers, checkpoint hooks. The text API (`generate`, `infill`,
`log_likelihood`) comes from `llada.text_model.TextAPI`, shared with the Lightning-free
`TextModel` that generation loads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric
from transformers import PreTrainedTokenizerBase

from llada import checkpoint_format
from llada.diffusion.likelihood import elbo_bucket_index
from llada.diffusion.objective import Objective
from llada.diffusion.schedules import MaskingSchedule
from llada.generation import GenerationSettings
from llada.text_model import TextAPI
from llada.validation_metric import ValidationNLL

CHECKPOINT_KEY = checkpoint_format.SECTION


class DiffusionLM(TextAPI, L.LightningModule):
    """A language model trained by an objective: `forward(input_ids, attention_mask) -> (B, L, V)`."""

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        schedule: MaskingSchedule | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        lr_scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        generation: dict[str, Any] | GenerationSettings | None = None,
        objective: Objective | Callable[..., Objective] | None = None,
        val_mc_samples: int = 1,
        val_seed: int = 1234,
        weight_decay: float = 0.1,
        loss_buckets: int = 10,
        nonfinite_loss: str = "stop",
        compile_backbone: bool = False,
        **objective_options: Any,
    ) -> None:
        """`objective`: a built objective, or a factory (a class, a Hydra partial) that gets the
        tokenizer's ids, `schedule` and `objective_options` (default: LLaDA's `MaskedDiffusion`,
        whose options are antithetic_time, random_length_prob, cfg_prompt_dropout)."""
        super().__init__()
        self.set_parts(backbone, tokenizer, schedule, generation, objective, objective_options)
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        # An exact objective gives its value in one pass: repeats would only cost time.
        self.val_mc_samples = 1 if self.objective.exact else val_mc_samples
        self.val_seed, self.weight_decay = val_seed, weight_decay
        self.loss_buckets = loss_buckets
        if nonfinite_loss not in ("stop", "skip"):
            raise ValueError(
                f"module.nonfinite_loss must be 'stop' or 'skip', got {nonfinite_loss!r}"
            )
        self.nonfinite_loss, self.compile_backbone = nonfinite_loss, compile_backbone
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
        self.val_bound = ValidationNLL()

    @property
    def tokens_seen(self) -> int:
        return int(self._tokens_seen)

    # ------------------------------------------------------------------ model
    def setup(self, stage: str) -> None:
        """`module.compile_backbone`: torch.compile the backbone in place (same parameter names)."""
        if self.compile_backbone and stage == "fit":
            self.backbone.compile()

    # --------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        self.objective.at_step(self.global_step)
        out = self.objective.training_loss(self.backbone, batch)
        self.log("train/loss", out.loss, prog_bar=True)
        if out.t is not None and out.row_loss is not None:
            self._log_loss_by_t(out.row_loss, out.t)
        if out.tokens is not None:
            self._tokens_seen += out.tokens.long()
            self.log("train/tokens_seen", self._tokens_seen.float())
        for name, value in out.logs.items():
            self.log(name, value)
        return self._guard_nonfinite(out.loss)

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
        """K draws of the objective's bound with a generator seeded per batch: reproducible."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.val_seed + batch_idx)
        for _ in range(self.val_mc_samples):
            rows = self.objective.validation_nll(self.backbone, batch, generator)
            self.val_bound.update(rows.nll, rows.slots)

    def on_validation_epoch_end(self) -> None:
        if self.val_bound.empty:
            return
        values = self.val_bound.compute()
        self.log_dict({f"val/{name}": value for name, value in values.items()}, prog_bar=True)
        sanity = self.trainer.sanity_checking
        summary = self.objective.validation_summary(apply=not sanity)
        if summary and not sanity:
            self.log_dict(summary)
        if not self.trainer.sanity_checking:
            self.last_validated_step = self.global_step
        self.val_bound.reset()

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

    # ----------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = checkpoint_format.section(self)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(CHECKPOINT_KEY, {})
        self._tokens_seen.fill_(int(meta.get("tokens_seen", 0)))
        self.objective.load_state(meta.get("objective_state", {}))
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
        checkpoint, meta = checkpoint_format.read(checkpoint_path, map_location)
        model = cls(**checkpoint_format.build_parts(meta), **kwargs)
        checkpoint_format.load_weights(model, checkpoint, meta, use_ema)
        model._tokens_seen.fill_(int(meta.get("tokens_seen", 0)))
        return model.to(map_location).eval()
