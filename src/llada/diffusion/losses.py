"""Training losses: weighted cross-entropy on masked tokens (an upper bound on NLL, in nats)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_token_nll(logits: Tensor, targets: Tensor, masked: Tensor) -> Tensor:
    """-log p(x0 | x_t) at masked positions, 0 elsewhere.

    logits (B, L, V), targets (B, L), masked (B, L) bool -> (B, L) float32.
    Only masked rows of the logits go through the softmax, which saves most of the CE cost at small t.
    """
    nll = torch.zeros(targets.shape, dtype=torch.float32, device=targets.device)  # (B, L)
    picked = logits[masked].float()  # (N, V)
    nll[masked] = F.cross_entropy(picked, targets[masked], reduction="none")
    return nll


def masked_nll_per_row(masked_logits: Tensor, targets: Tensor, masked: Tensor) -> Tensor:
    """Sum of -log p(x0 | x_t) over each row's masked positions.

    masked_logits (N, V) are the logits at the N masked positions of `masked` (B, L) in row-major
    order (what `logits[masked]` gives), targets (B, L) -> (B,) float32.
    """
    nll = F.cross_entropy(masked_logits.float(), targets[masked], reduction="none")  # (N,)
    rows = masked.nonzero()[:, 0]  # (N,) row index of each masked position
    return torch.zeros(masked.shape[0], device=nll.device).index_add_(0, rows, nll)
