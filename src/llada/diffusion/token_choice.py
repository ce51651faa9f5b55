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


def forbid_tokens(logits: Tensor, ids: Sequence[int], in_place: bool = False) -> Tensor:
    """logits (..., V) with the given token ids set to -inf, so no chooser can pick them (e.g. EOS).

    Out of place unless the caller owns the tensor (a model may return an expanded or cached one).
    """
    if len(ids) == 0:
        return logits
    vocab = logits.shape[-1]
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise ValueError(f"forbid_ids {bad} are outside the vocabulary [0, {vocab})")
    index = torch.tensor(list(ids), dtype=torch.long, device=logits.device)
    fill = logits.index_fill_ if in_place else logits.index_fill
    return fill(-1, index, float("-inf"))  # (..., V)


class Greedy:
    """argmax: deterministic, the usual choice with low-confidence remasking."""

    # Sampling options a shared settings dict may carry; meaningless for argmax, so dropped.
    ignored_options: ClassVar[tuple[str, ...]] = ("temperature", "top_k", "top_p")

    def __init__(self) -> None:
        pass

    def choose(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """logits (..., V) -> tokens (...) long."""
        return logits.argmax(dim=-1)  # (...)


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
        """Tempered float64 logits (..., V) with filtered-out tokens set to -inf."""
        scores = logits.to(torch.float64, copy=True)  # (..., V), ours: filtered in place below
        if self.temperature != 1.0:
            scores.div_(self.temperature)
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
        """logits (..., V) -> sampled tokens (...) long; temperature 0 is argmax.

        The decoders pass only the rows of masked positions, so the noise is drawn there alone;
        it is built in place (one buffer, no temporaries of the logits' size).
        """
        if self.temperature == 0:
            return logits.argmax(dim=-1)  # (...)
        scores = self.filter(logits)  # (..., V) float64
        noise = torch.rand(
            scores.shape, dtype=torch.float64, generator=generator, device=logits.device
        )
        # Gumbel(0, 1) = -log(-log u), u clamped away from 0 so no -inf/NaN arises.
        noise.clamp_min_(torch.finfo(torch.float64).tiny).log_().neg_().log_().neg_()
        return scores.add_(noise).argmax(dim=-1)  # (...)


TOKEN_CHOOSERS: dict[str, type] = {"greedy": Greedy, "multinomial": Multinomial}


def make_token_chooser(name: str, **options: object) -> Greedy | Multinomial:
    """Build a chooser by config name; Greedy drops the sampling options so one dict serves both."""
    if name not in TOKEN_CHOOSERS:
        raise ValueError(f"unknown token chooser {name!r}; allowed: {', '.join(TOKEN_CHOOSERS)}")
    cls = TOKEN_CHOOSERS[name]
    kept = {k: v for k, v in options.items() if k not in cls.ignored_options}
    return cls(**kept)
