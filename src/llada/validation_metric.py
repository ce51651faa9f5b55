"""The validation bound as one torchmetrics `Metric`: token-mean NLL, perplexity, standard error.

Accumulates every draw of every batch (summed across processes under DDP) and reports the
per-token NLL over all scored tokens, its perplexity and the standard error of the row-wise
per-token values (how much the Monte-Carlo estimate, and the rows, spread).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ValidationNLL(Metric):
    """`update(row_nll (B,), slots (B,))`; `compute()` -> {"elbo", "ppl", "elbo_stderr"}."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("nll", "slots", "row_sum", "row_sq", "rows"):
            self.add_state(name, default=torch.zeros(()), dist_reduce_fx="sum")

    def update(self, row_nll: Tensor, slots: Tensor) -> None:
        per_token = row_nll / slots.clamp_min(1.0)  # (B,)
        self.nll += row_nll.sum()
        self.slots += slots.sum()
        self.row_sum += per_token.sum()
        self.row_sq += (per_token**2).sum()
        self.rows += per_token.numel()

    @property
    def empty(self) -> bool:
        return bool(self.slots <= 0)

    def compute(self) -> dict[str, Tensor]:
        elbo = self.nll / self.slots
        mean = self.row_sum / self.rows
        variance = (self.row_sq / self.rows - mean**2).clamp_min(0.0)
        stderr = torch.sqrt(variance / self.rows.clamp_min(2.0))
        return {"elbo": elbo, "ppl": torch.exp(elbo), "elbo_stderr": stderr}
