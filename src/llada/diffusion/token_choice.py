"""Token choice (the "sampler"): which token each masked position would become this step.

Remasking then decides which of these choices are committed; the two are separate so any chooser
can be paired with any remasking strategy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

import torch
from torch import Tensor


class TokenChooser(Protocol):
    """Anything with `choose`; lets `generate` accept choosers added later."""

    def choose(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor: ...


def forbid_tokens(logits: Tensor, ids: Sequence[int]) -> Tensor:
    """logits (B, L, V) with the given token ids set to -inf, so no chooser can pick them (e.g. EOS).

    Out of place: a model may return an expanded or cached tensor.
    """
    if len(ids) == 0:
        return logits
    vocab = logits.shape[-1]
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise ValueError(f"forbid_ids {bad} are outside the vocabulary [0, {vocab})")
    index = torch.tensor(list(ids), dtype=torch.long, device=logits.device)
    return logits.index_fill(-1, index, float("-inf"))  # (B, L, V)


class Greedy:
    """argmax: deterministic, the usual choice with low-confidence remasking."""

    # Sampling options a shared settings dict may carry; meaningless for argmax, so dropped.
    ignored_options: ClassVar[tuple[str, ...]] = ("temperature", "top_k", "top_p")

    def __init__(self) -> None:
        pass

    def choose(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """logits (B, L, V) -> tokens (B, L) long."""
        return logits.argmax(dim=-1)  # (B, L)


class Multinomial:
    """Sample from softmax(logits / T) after top-k and top-p filtering, via float64 Gumbel-max.

    Gumbel noise in low precision is known to degrade samples, hence float64 throughout.
    """

    ignored_options: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
    ) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def filter(self, logits: Tensor) -> Tensor:
        """Tempered float64 logits (B, L, V) with filtered-out tokens set to -inf."""
        scores = logits.to(torch.float64) / self.temperature  # (B, L, V)
        vocab = scores.shape[-1]
        if self.top_k is not None and self.top_k < vocab:
            kth = scores.topk(self.top_k, dim=-1).values[..., -1:]  # (B, L, 1)
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p is not None and self.top_p < 1.0:
            sorted_scores, order = scores.sort(dim=-1, descending=True)  # (B, L, V)
            probs = sorted_scores.softmax(dim=-1)
            # Drop a token once the mass strictly before it already reaches top_p; top-1 always stays.
            drop_sorted = (probs.cumsum(dim=-1) - probs) >= self.top_p  # (B, L, V)
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            scores = scores.masked_fill(drop, float("-inf"))
        return scores

    def choose(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """logits (B, L, V) -> sampled tokens (B, L) long; temperature 0 is argmax."""
        if self.temperature == 0:
            return logits.argmax(dim=-1)  # (B, L)
        scores = self.filter(logits)  # (B, L, V) float64
        uniform = torch.rand(
            scores.shape, dtype=torch.float64, generator=generator, device=logits.device
        )
        tiny = torch.finfo(torch.float64).tiny
        gumbel = -torch.log(-torch.log(uniform.clamp_min(tiny)))  # (B, L, V)
        return (scores + gumbel).argmax(dim=-1)  # (B, L)


TOKEN_CHOOSERS: dict[str, type] = {"greedy": Greedy, "multinomial": Multinomial}


def make_token_chooser(name: str, **options: object) -> Greedy | Multinomial:
    """Build a chooser by config name; Greedy drops the sampling options so one dict serves both."""
    if name not in TOKEN_CHOOSERS:
        raise ValueError(f"unknown token chooser {name!r}; allowed: {', '.join(TOKEN_CHOOSERS)}")
    cls = TOKEN_CHOOSERS[name]
    kept = {k: v for k, v in options.items() if k not in cls.ignored_options}
    return cls(**kept)
