"""Log-probabilities of completions under a masked diffusion model, for post-training.

A completion is a set of positions of a row (a suffix after a prompt, or the blanks of a puzzle):
`tokens` (B, L) holds the filled row, `completion` (B, L) bool says which positions were
generated. An MDM has no exact log p(completion | rest), so post-training estimates it. Two
estimators, each in two halves: `draw` takes the random part (masks) once, `units` evaluates a
model on it, so a policy and its reference (or old policy) can share the same draws (LLaDA 1.5's
antithetic sampling; d1 redraws them per inner step and reuses them for old and reference).

- `MeanFieldLogProbs` (d1's diffu-GRPO): the whole completion masked, each prompt token masked
  with probability p, one forward pass; the per-token log p(o_k | prompt) it gives treats the
  completion's tokens as independent. It is a mean-field approximation, NOT a bound on the
  sequence log-likelihood: cheap (one pass), biased, and what d1 uses.
- `ELBOLogProbs`: LLaDA's eq. 6 lower bound on log p(completion | rest), estimated by Monte Carlo
  with `n_times` mask counts l ~ U{1..T}, `masks_per_time` random l-subsets each; unbiased for
  the bound (enumeration test in tests/test_posttraining.py).

`units` returns (values (B, K), weights (B, K)); the sum over k of weights * values is the
estimate's per-token log-probability of each row (mean field: K = L, one unit per completion
token; ELBO: K = 1, the sequence bound over its T tokens). GRPO's importance ratios are per unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from llada.diffusion.objective import logits_at
from llada.diffusion.sampling import LogitsFn


def token_log_probs(
    backbone: LogitsFn, noisy: Tensor, attention_mask: Tensor | None, tokens: Tensor, at: Tensor
) -> Tensor:
    """log p(tokens[at]) (N,) float32 from one forward pass over `noisy` (B, L)."""
    logits = logits_at(backbone, noisy, attention_mask, at).float()  # (N, V)
    return F.log_softmax(logits, dim=-1).gather(-1, tokens[at][:, None])[:, 0]  # (N,)


class LogProbEstimator(Protocol):
    """How post-training estimates a completion's log-probability (see the module docstring)."""

    def draw(self, tokens: Tensor, completion: Tensor, attention_mask: Tensor | None) -> Tensor: ...

    def units(
        self,
        backbone: LogitsFn,
        tokens: Tensor,
        completion: Tensor,
        attention_mask: Tensor | None,
        noise: Tensor,
        mask_id: int,
    ) -> tuple[Tensor, Tensor]: ...


@dataclass
class MeanFieldLogProbs:
    """d1's one-pass estimate: completion masked, prompt tokens masked with `prompt_mask_prob`."""

    prompt_mask_prob: float = 0.15

    def __post_init__(self) -> None:
        if not 0.0 <= self.prompt_mask_prob < 1.0:
            raise ValueError(
                f"prompt_mask_prob must be in [0, 1), got {self.prompt_mask_prob} (d1 uses 0.15)"
            )

    def draw(self, tokens: Tensor, completion: Tensor, attention_mask: Tensor | None) -> Tensor:
        """Which prompt positions to mask (B, L) bool, from torch's global RNG (resume-exact)."""
        visible = ~completion
        if attention_mask is not None:
            visible &= attention_mask.bool()
        return (torch.rand(tokens.shape, device=tokens.device) < self.prompt_mask_prob) & visible

    def units(
        self,
        backbone: LogitsFn,
        tokens: Tensor,
        completion: Tensor,
        attention_mask: Tensor | None,
        noise: Tensor,
        mask_id: int,
    ) -> tuple[Tensor, Tensor]:
        """Per completion token log p (B, L) (0 elsewhere), weights 1/|o| on the completion."""
        noisy = tokens.masked_fill(completion | noise, mask_id)  # (B, L)
        logp = token_log_probs(backbone, noisy, attention_mask, tokens, completion)  # (N,)
        values = torch.zeros(tokens.shape, device=tokens.device).masked_scatter(completion, logp)
        lengths = completion.sum(dim=1, keepdim=True).clamp_min(1)  # (B, 1)
        return values, completion.float() / lengths


@dataclass
class ELBOLogProbs:
    """LLaDA eq. 6 bound by Monte Carlo: a budget of n_times x masks_per_time (l, subset) draws.

    LLaDA 1.5's allocation result: for a fixed budget, many timesteps with one mask each
    (masks_per_time=1) has the lowest variance.
    """

    n_times: int = 4
    masks_per_time: int = 1

    def __post_init__(self) -> None:
        if self.n_times < 1 or self.masks_per_time < 1:
            raise ValueError(
                f"n_times and masks_per_time must be >= 1, got {self.n_times}, "
                f"{self.masks_per_time}"
            )

    @property
    def budget(self) -> int:
        return self.n_times * self.masks_per_time

    def draw(self, tokens: Tensor, completion: Tensor, attention_mask: Tensor | None) -> Tensor:
        """Masked subsets (n, B, L) bool, n = budget: l ~ U{1..T_b} per time, then subsets."""
        rows = tokens.shape[0]
        lengths = completion.sum(dim=1)  # (B,) T_b
        if bool((lengths == 0).any()):
            raise ValueError("a row has no completion positions to score")
        unit = torch.rand(self.n_times, rows, device=tokens.device)  # (n_t, B)
        counts = (unit * lengths).long().clamp_max(lengths - 1) + 1  # (n_t, B) in 1..T_b
        counts = counts.repeat_interleave(self.masks_per_time, dim=0)  # (n, B)
        scores = torch.rand(self.budget, *tokens.shape, device=tokens.device)  # (n, B, L)
        scores = scores.masked_fill(~completion, 2.0)  # non-completion positions rank last
        ranks = scores.argsort(dim=-1).argsort(dim=-1)  # (n, B, L)
        return ranks < counts[..., None]  # (n, B, L): l_b random completion positions

    def sequence(
        self,
        backbone: LogitsFn,
        tokens: Tensor,
        completion: Tensor,
        attention_mask: Tensor | None,
        noise: Tensor,
        mask_id: int,
    ) -> Tensor:
        """The bound's estimate (B,) from the draws `noise` (n, B, L): the mean of (T/l) sum."""
        draws, rows, length = noise.shape
        flat_tokens = tokens.repeat(draws, 1)  # (n B, L)
        flat_noise = noise.reshape(draws * rows, length)  # (n B, L)
        noisy = flat_tokens.masked_fill(flat_noise, mask_id)
        attention = None if attention_mask is None else attention_mask.repeat(draws, 1)
        logp = token_log_probs(backbone, noisy, attention, flat_tokens, flat_noise)  # (N,)
        per_draw = torch.zeros(flat_noise.shape, device=tokens.device).masked_scatter(
            flat_noise, logp
        )  # (n B, L)
        sums = per_draw.sum(dim=1).view(draws, rows)  # (n, B)
        weight = completion.sum(dim=1).float() / noise.sum(dim=2).float()  # (n, B): T / l
        return (weight * sums).mean(dim=0)  # (B,)

    def units(
        self,
        backbone: LogitsFn,
        tokens: Tensor,
        completion: Tensor,
        attention_mask: Tensor | None,
        noise: Tensor,
        mask_id: int,
    ) -> tuple[Tensor, Tensor]:
        """One unit per row: the bound per completion token (B, 1), weight 1."""
        bound = self.sequence(backbone, tokens, completion, attention_mask, noise, mask_id)
        per_token = bound / completion.sum(dim=1).float()  # (B,)
        return per_token[:, None], torch.ones_like(per_token)[:, None]
