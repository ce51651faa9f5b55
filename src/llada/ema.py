"""Exponential moving average of the weights, used for validation and sampling when enabled.

The averaged weights travel in every checkpoint (`ema_state_dict`), so a resumed run continues the
average and `DiffusionLM.load_from_checkpoint` samples from them by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch

from llada.checkpoint_format import EMA_KEY


class EMA(L.Callback):
    """shadow <- decay * shadow + (1 - decay) * weights after every optimizer step."""

    def __init__(self, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow: dict[str, torch.Tensor] = {}
        self._backup: dict[str, torch.Tensor] | None = None

    def _float_weights(self, pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        return {k: v for k, v in pl_module.state_dict().items() if v.is_floating_point()}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.shadow:
            self.shadow = {k: v.detach().clone() for k, v in self._float_weights(pl_module).items()}

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any):
        for name, value in self._float_weights(pl_module).items():
            self.shadow[name].lerp_(value.detach().to(self.shadow[name].dtype), 1.0 - self.decay)

    def _swap_in(self, pl_module: L.LightningModule) -> bool:
        """Put the averaged weights in the module (keeping the live ones); False if nothing to do."""
        if not self.shadow or self._backup is not None:
            return False
        self._backup = {k: v.detach().clone() for k, v in self._float_weights(pl_module).items()}
        pl_module.load_state_dict(self.shadow, strict=False)
        return True

    def _swap_out(self, pl_module: L.LightningModule) -> None:
        if self._backup is not None:
            pl_module.load_state_dict(self._backup, strict=False)
            self._backup = None

    @contextmanager
    def averaged(self, pl_module: L.LightningModule) -> Iterator[None]:
        """Run a block with the averaged weights in the module, then put the live ones back."""
        swapped = self._swap_in(pl_module)
        try:
            yield
        finally:
            if swapped:
                self._swap_out(pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_in(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_out(pl_module)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Saved during validation the module holds the averaged weights: store the live ones.
        if self._backup is not None:
            checkpoint["state_dict"] = {**checkpoint["state_dict"], **self._backup}
        checkpoint[EMA_KEY] = {k: v.detach().clone() for k, v in self.shadow.items()}

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if EMA_KEY in checkpoint:
            self.shadow = {k: v.clone() for k, v in checkpoint[EMA_KEY].items()}


def find_ema(trainer: L.Trainer) -> EMA | None:
    return next((c for c in trainer.callbacks if isinstance(c, EMA)), None)
