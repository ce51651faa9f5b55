"""Remasking strategies: which predictions commit this step, how many, and which to take back.

Each strategy is one small class, so a new rule is a new class plus a registry entry; the reverse
process (`sampling.generate`) only calls the three hooks of `Remasking`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def commit_top_k(scores: Tensor, k: Tensor) -> Tensor:
    """Bool (B, L) selecting each row's k[b] highest scores (ties broken by position), no row loop.

    scores (B, L) with -inf where nothing may be selected; k (B,) long.
    """
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # (B, L)
    positions = torch.arange(scores.shape[1], device=scores.device).expand_as(order)  # (B, L)
    rank = torch.empty_like(order).scatter_(1, order, positions)  # (B, L) rank of each position
    return rank < k.unsqueeze(1)


class Remasking:
    """Scores predictions; `generate` commits the top `commit_count` masked positions of the block.

    Hooks with defaults, so a plain strategy only writes `confidence`:
    - `commit_count`: the step plan's k_s (adaptive strategies choose their own count);
    - `remask`: nothing (committed tokens stay fixed unless a strategy corrects errors).
    """

    def __init__(self) -> None:
        # Explicit so an unknown option raises a TypeError that names it.
        pass

    def confidence(
        self, logits: Tensor, tokens: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """logits (..., V), chosen tokens (...) -> score (...) float32; higher commits first.

        The decoders pass the rows of the masked positions only: (N, V) and (N,).
        """
        raise NotImplementedError

    def commit_count(self, score: Tensor, eligible: Tensor, planned_k: Tensor) -> Tensor:
        """How many positions each row commits now: (B,) long.

        score (B, L) float32, -inf off `eligible` (B, L) bool; planned_k (B,) long from the plan.
        """
        return planned_k

    def remask(
        self, commit_score: Tensor, candidates: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Committed tokens to mask again: (B, L) bool within `candidates` (B, L) bool.

        commit_score (B, L) float32 is each token's confidence when it was committed.
        """
        return torch.zeros_like(candidates)


class RandomRemasking(Remasking):
    """LLaDA "random remasking": commit a uniformly random subset of the masked positions."""

    def confidence(
        self, logits: Tensor, tokens: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        return torch.rand(
            tokens.shape, dtype=torch.float32, generator=generator, device=tokens.device
        )  # (...)


class LowConfidenceRemasking(Remasking):
    """Commit the positions whose chosen token is most probable under the untempered softmax."""

    def confidence(
        self, logits: Tensor, tokens: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        probs = logits.float().softmax(dim=-1)  # (..., V)
        return probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (...)


class MarginRemasking(Remasking):
    """Dream "topk_margin": p(top1) - p(top2); a near-tie between two tokens waits."""

    def confidence(
        self, logits: Tensor, tokens: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        probs = logits.float().softmax(dim=-1)  # (..., V)
        if probs.shape[-1] < 2:
            return probs[..., 0]  # one-token vocabulary: certain
        top = probs.topk(2, dim=-1).values  # (..., 2)
        return top[..., 0] - top[..., 1]  # (...)


class EntropyRemasking(Remasking):
    """Dream "entropy": -H(p); a peaked distribution commits before a flat one."""

    def confidence(
        self, logits: Tensor, tokens: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        probs = logits.float().softmax(dim=-1)  # (..., V)
        # xlogy(0, 0) = 0, so tokens with zero probability (forbidden ones) add nothing.
        return torch.special.xlogy(probs, probs).sum(dim=-1)  # (...)


class ThresholdRemasking(LowConfidenceRemasking):
    """Fast-dLLM parallel decoding: commit every masked position with confidence >= threshold.

    At least the top-1 commits, so each step makes progress; the number of steps adapts (the plan's
    k_s is ignored) and `generate` keeps stepping until the block is full.
    """

    def __init__(self, threshold: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"remasking.threshold must be in [0, 1], got {threshold}")
        self.threshold = threshold

    def commit_count(self, score: Tensor, eligible: Tensor, planned_k: Tensor) -> Tensor:
        above = (score >= self.threshold) & eligible  # (B, L)
        return above.sum(dim=1).clamp_min(1)  # (B,)


class FactorRemasking(LowConfidenceRemasking):
    """Fast-dLLM's factor rule: with the block's confidences sorted c_1 >= c_2 >= ..., commit
    the largest n with (n + 1) * (1 - c_n) < factor, and at least one.

    More tokens commit together the surer the model is of all of them (a bound on the chance
    that any of the n is wrong); the number of steps adapts, as with `threshold`.
    """

    def __init__(self, factor: float = 1.0) -> None:
        super().__init__()
        if factor <= 0:
            raise ValueError(f"remasking.factor must be > 0, got {factor}")
        self.factor = factor

    def commit_count(self, score: Tensor, eligible: Tensor, planned_k: Tensor) -> Tensor:
        ranked = torch.sort(score.masked_fill(~eligible, float("-inf")), dim=1, descending=True)
        n = torch.arange(1, score.shape[1] + 1, device=score.device)  # (L,)
        fits = (n + 1) * (1 - ranked.values.double()) < self.factor  # (B, L), a prefix per row
        return fits.sum(dim=1).clamp_min(1)  # (B,)


class RemdmRemasking(LowConfidenceRemasking):
    """ReMDM-style error correction: commit like low_confidence, then mask again the lowest-confidence
    tokens committed earlier, so a later step may change them.

    `sigma` is the fraction of the candidates re-masked per step (rounded half up), or `count` a
    fixed number; `generate` never offers prompt tokens, tokens outside the block, tokens committed
    this step, or anything on a block's last step, so every block still ends without masks.
    """

    def __init__(self, sigma: float = 0.05, count: int | None = None) -> None:
        super().__init__()
        if not 0.0 <= sigma < 1.0:
            raise ValueError(f"remasking.sigma must be in [0, 1), got {sigma}")
        if count is not None and count < 0:
            raise ValueError(f"remasking.count must be >= 0 or null, got {count}")
        self.sigma, self.count = sigma, count

    def remask(
        self, commit_score: Tensor, candidates: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        available = candidates.sum(dim=1)  # (B,)
        if self.count is None:
            k = torch.floor(self.sigma * available.double() + 0.5).long()  # (B,)
        else:
            k = torch.full_like(available, self.count)
        k = torch.minimum(k, available)
        finite = torch.finfo(torch.float32)
        # Lowest confidence first; a NaN score counts as the least trustworthy.
        doubt = (-commit_score.float()).nan_to_num(
            nan=finite.max, posinf=finite.max, neginf=finite.min
        )  # (B, L)
        doubt = doubt.masked_fill(~candidates, float("-inf"))
        return commit_top_k(doubt, k) & candidates  # (B, L)


REMASKINGS: dict[str, type[Remasking]] = {
    "random": RandomRemasking,
    "low_confidence": LowConfidenceRemasking,
    "margin": MarginRemasking,
    "entropy": EntropyRemasking,
    "threshold": ThresholdRemasking,
    "factor": FactorRemasking,
    "remdm": RemdmRemasking,
}


def make_remasking(name: str, **options: object) -> Remasking:
    """Build a remasking strategy by config name."""
    if name not in REMASKINGS:
        raise ValueError(f"unknown remasking {name!r}; allowed: {', '.join(REMASKINGS)}")
    return REMASKINGS[name](**options)
