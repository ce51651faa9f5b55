"""Remasking strategies: a confidence score per position; the highest-scoring predictions commit.

Each strategy is one small class, so margin, entropy or threshold variants are added as new classes
and registry entries without touching the reverse process.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Remasking:
    """Scores predictions; `generate` commits the top-k_s masked positions of the current block."""

    def __init__(self) -> None:
        # Explicit so an unknown option raises a TypeError that names it.
        pass

    def confidence(
        self, logits: Tensor, tokens: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """logits (B, L, V), chosen tokens (B, L) -> score (B, L) float32; higher commits first."""
        raise NotImplementedError


class RandomRemasking(Remasking):
    """LLaDA "random remasking": commit a uniformly random subset of the masked positions."""

    def confidence(
        self, logits: Tensor, tokens: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        return torch.rand(
            tokens.shape, dtype=torch.float32, generator=generator, device=tokens.device
        )  # (B, L)


class LowConfidenceRemasking(Remasking):
    """Commit the positions whose chosen token is most probable under the untempered softmax."""

    def confidence(
        self, logits: Tensor, tokens: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        probs = logits.float().softmax(dim=-1)  # (B, L, V)
        return probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, L)


REMASKINGS: dict[str, type[Remasking]] = {
    "random": RandomRemasking,
    "low_confidence": LowConfidenceRemasking,
}


def make_remasking(name: str, **options: object) -> Remasking:
    """Build a remasking strategy by config name."""
    if name not in REMASKINGS:
        raise ValueError(f"unknown remasking {name!r}; allowed: {', '.join(REMASKINGS)}")
    return REMASKINGS[name](**options)
