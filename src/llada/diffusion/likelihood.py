"""Conditional likelihood of an answer given a prompt under a masked diffusion model (LLaDA eq. 6).

The bound is `log p(r | p) >= E_l E_S [(T / l) * sum_{i in S} log p_theta(r_i | p, r with S masked)]`,
l ~ U{1..T}, S a uniform l-subset of the T answer positions. It equals the average over all T! orders of
the any-order autoregressive log-likelihood (each order is a proper left-to-right factorisation of the
model), so it lower-bounds, by Jensen, the log-likelihood of the random-order generative model. Here it
is estimated by Monte Carlo, computed exactly by enumeration for tiny T, and compared with one fixed
order (SMDM's left-to-right chain rule).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from llada.diffusion.losses import masked_token_nll
from llada.diffusion.sampling import LogitsFn

MAX_EXACT_ANSWER_LEN = 12  # exact_elbo enumerates 2**T - 1 subsets: 4095 forward rows at T = 12


def stratified_mask_counts(
    answer_len: int,
    batch: int,
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Numbers of masked answer tokens l_j for one batch of MC rows, spread evenly over 1..T. (batch,) long.

    LLaDA's stratification: k ~ U{1..T}, l_j = round(k + j*T/b) for j = 0..b-1, wrapped into [1, T] by
    l -> ((l - 1) mod T) + 1. Rows of one batch cover 1..T evenly (lower variance than iid l) and every
    l_j on its own is still U{1..T}, so the estimator stays unbiased.

    Rounding is half-up, done in integers: round(j*T/b) = floor((2*j*T + b) / (2*b)). That makes
    l_j = k + const, which is uniform after the wrap. Round-half-to-even (torch.round) would break this:
    with T = 4, b = 8 the row j = 1 gets k + 0.5 -> {2, 2, 4, 4} for k = 1..4, never 1 or 3.
    """
    if answer_len < 1 or batch < 1:
        raise ValueError(f"need answer_len >= 1 and batch >= 1, got {answer_len} and {batch}")
    k = torch.randint(1, answer_len + 1, (1,), generator=generator, device=device)  # (1,)
    j = torch.arange(batch, device=device)  # (b,)
    offsets = torch.div(2 * j * answer_len + batch, 2 * batch, rounding_mode="floor")  # (b,)
    return (k + offsets - 1) % answer_len + 1  # (b,) in [1, T]


def conditional_log_likelihood(
    logits_fn: LogitsFn,
    prompt_ids: Tensor,
    answer_ids: Tensor,
    mask_id: int,
    *,
    mc_samples: int = 128,
    batch_size: int = 32,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Monte-Carlo estimate of the eq. 6 lower bound on log p(answer | prompt), and its standard error.

    prompt_ids (P,), answer_ids (T,). Each sample draws l (stratified within each batch of rows), masks
    exactly l answer positions uniformly without replacement (the prompt is never masked) and scores
    (T / l) * sum over masked i of log p_theta(answer_i | prompt, masked answer).

    The standard error is std / sqrt(n) as if the samples were iid. Stratifying l makes the true error
    smaller whenever the score depends smoothly on l, so this is normally conservative.
    At T == 1 the bound is exact: one forward pass, standard error 0. Returns float32 scalars.
    """
    answer_len = _check_inputs(prompt_ids, answer_ids)
    if mc_samples < 1 or batch_size < 1:
        raise ValueError(
            f"need mc_samples >= 1 and batch_size >= 1, got {mc_samples}, {batch_size}"
        )
    device = answer_ids.device
    if answer_len == 1:
        masked = torch.ones(1, 1, dtype=torch.bool, device=device)  # (1, 1)
        value = _masked_log_prob(logits_fn, prompt_ids, answer_ids, masked, mask_id)[0]
        return value.float(), torch.zeros((), device=device)

    scores = []
    for start in range(0, mc_samples, batch_size):
        rows = min(batch_size, mc_samples - start)
        counts = stratified_mask_counts(answer_len, rows, generator, device=device)  # (b,)
        keys = torch.rand(rows, answer_len, generator=generator, device=device)  # (b, T)
        ranks = keys.argsort(dim=1).argsort(dim=1)  # (b, T) a uniform random permutation per row
        masked = ranks < counts[:, None]  # (b, T) exactly l_j masked, uniformly without replacement
        log_prob = _masked_log_prob(logits_fn, prompt_ids, answer_ids, masked, mask_id)  # (b,)
        scores.append(log_prob * answer_len / counts.double())  # (b,)
    samples = torch.cat(scores)  # (n,)
    if samples.numel() == 1:
        stderr = torch.full((), float("nan"), dtype=torch.float64, device=device)
    else:
        stderr = samples.std() / math.sqrt(samples.numel())
    return samples.mean().float(), stderr.float()


def exact_elbo(
    logits_fn: LogitsFn,
    prompt_ids: Tensor,
    answer_ids: Tensor,
    mask_id: int,
    *,
    batch_size: int = 256,
) -> Tensor:
    """The eq. 6 bound computed exactly by enumerating every non-empty mask subset S of the answer.

    Subset S with |S| = l has probability 1/(T * C(T, l)) and weight T / l, so it counts
    1 / (l * C(T, l)) times sum_{i in S} log p_theta(answer_i | prompt, answer with S masked).
    For tests with tiny T only (T <= 12). Returns a float32 scalar.
    """
    answer_len = _check_inputs(prompt_ids, answer_ids)
    if answer_len > MAX_EXACT_ANSWER_LEN:
        raise ValueError(
            f"exact_elbo enumerates 2**T - 1 mask subsets and supports answers of at most "
            f"{MAX_EXACT_ANSWER_LEN} tokens, got T={answer_len}"
        )
    device = answer_ids.device
    codes = torch.arange(1, 2**answer_len, device=device)  # (2^T - 1,) every non-empty subset
    bits = torch.arange(answer_len, device=device)  # (T,)
    subsets = (codes[:, None] >> bits) & 1 == 1  # (2^T - 1, T) bool
    sizes = subsets.sum(dim=1)  # (2^T - 1,)
    binom = torch.tensor(
        [math.comb(answer_len, n) for n in range(answer_len + 1)],
        dtype=torch.float64,
        device=device,
    )  # (T + 1,)
    weights = 1.0 / (sizes.double() * binom[sizes])  # (2^T - 1,)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, subsets.shape[0], batch_size):
        chunk = subsets[start : start + batch_size]  # (c, T)
        log_prob = _masked_log_prob(logits_fn, prompt_ids, answer_ids, chunk, mask_id)  # (c,)
        total += (weights[start : start + batch_size] * log_prob).sum()
    return total.float()


def chain_rule_log_likelihood(
    logits_fn: LogitsFn,
    prompt_ids: Tensor,
    answer_ids: Tensor,
    mask_id: int,
    *,
    batch_size: int = 64,
) -> Tensor:
    """SMDM's left-to-right log-likelihood: sum_i log p_theta(answer_i | prompt, answer_<i, M...M).

    Row i sees answer_<i clean and answer_>=i masked. This is an exact log-likelihood (a normalised
    distribution over answers, if the model gives the mask token no probability) of the model used as
    an autoregressive model with a fixed left-to-right order. Returns a float32 scalar.
    """
    answer_len = _check_inputs(prompt_ids, answer_ids)
    device = answer_ids.device
    positions = torch.arange(answer_len, device=device)  # (T,)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, answer_len, batch_size):
        steps = positions[start : start + batch_size]  # (c,) the position each row predicts
        masked = positions[None, :] >= steps[:, None]  # (c, T) answer_>=i masked
        target = positions[None, :] == steps[:, None]  # (c, T) only answer_i is scored
        total += _masked_log_prob(logits_fn, prompt_ids, answer_ids, masked, mask_id, target).sum()
    return total.float()


def elbo_bucket_index(t: Tensor, n_buckets: int = 10) -> Tensor:
    """Which of n equal buckets of [0, 1] each noise level falls in, for "loss by t-bucket" logs.

    Bucket b holds b/n <= t < (b+1)/n; t == 1.0 (and anything outside [0, 1]) is clamped into the
    first or last bucket. Same shape as t, long.
    """
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
    return torch.floor(t * n_buckets).long().clamp(0, n_buckets - 1)


def _check_inputs(prompt_ids: Tensor, answer_ids: Tensor) -> int:
    """Both are single unbatched sequences; the answer must be non-empty. Returns T."""
    if prompt_ids.dim() != 1 or answer_ids.dim() != 1:
        raise ValueError(
            f"prompt_ids and answer_ids must be 1-D, got shapes {tuple(prompt_ids.shape)} "
            f"and {tuple(answer_ids.shape)}"
        )
    if answer_ids.numel() == 0:
        raise ValueError("answer_ids must hold at least one token")
    return answer_ids.numel()


def _masked_log_prob(
    logits_fn: LogitsFn,
    prompt_ids: Tensor,
    answer_ids: Tensor,
    masked: Tensor,
    mask_id: int,
    scored: Tensor | None = None,
) -> Tensor:
    """Per row, sum over scored answer positions of log p_theta(answer_i | prompt, masked answer).

    masked (N, T) bool says which answer positions are replaced by the mask token; scored (N, T), a
    subset of masked, defaults to all of them. One forward pass over N rows. Returns (N,) float64.
    """
    rows, prompt_len = masked.shape[0], prompt_ids.numel()
    answers = answer_ids.expand(rows, -1)  # (N, T)
    noisy = torch.where(masked, torch.full_like(answers, mask_id), answers)  # (N, T)
    canvas = torch.cat([prompt_ids.expand(rows, -1), noisy], dim=1)  # (N, P + T)
    logits = logits_fn(canvas, None)  # (N, P + T, V)
    picked = masked if scored is None else scored  # (N, T)
    nll = masked_token_nll(logits[:, prompt_len:], answers, picked)  # (N, T), 0 off `picked`
    return -nll.double().sum(dim=1)  # (N,)
