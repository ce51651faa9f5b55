"""Likelihood estimators against exact values on tiny models where everything can be enumerated."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import torch
from torch import Tensor, nn

from llada.diffusion.likelihood import (
    MAX_EXACT_ANSWER_LEN,
    chain_rule_log_likelihood,
    conditional_log_likelihood,
    elbo_bucket_index,
    exact_elbo,
    stratified_mask_counts,
)

VOCAB = 6
MASK_ID = 5  # tokens 0..4 are real, 5 is the mask


class ContextFree:
    """A fixed random logits table per (position, token) that ignores the input.

    Its conditionals do not depend on what is masked, so its implied joint is the product of the
    per-position marginals and the eq. 6 bound is exact.
    """

    def __init__(self, length: int, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.table = 2.0 * torch.randn(length, VOCAB, generator=gen)  # (L, V)
        self.table[:, MASK_ID] = float("-inf")  # a proper distribution over the real tokens

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        batch, length = input_ids.shape
        return self.table[:length].expand(batch, -1, -1)  # (B, L, V)

    def log_marginals(self, prompt_len: int, answer: Tensor) -> Tensor:
        """Sum of log p_i(answer_i): the exact log-likelihood of this model's joint."""
        rows = self.table[prompt_len : prompt_len + answer.numel()].log_softmax(-1)  # (T, V)
        return rows.gather(1, answer[:, None]).sum().float()


class TinyNet(nn.Module):
    """Embedding + one linear layer over the whole flattened canvas: every output sees every input."""

    def __init__(self, length: int, dim: int = 4, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.length = length
        self.embed = nn.Parameter(torch.randn(VOCAB, dim, generator=gen))  # (V, d)
        self.proj = nn.Parameter(
            torch.randn(length * dim, length * VOCAB, generator=gen) / math.sqrt(length * dim)
        )  # (L*d, L*V)

    @torch.no_grad()
    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        batch = input_ids.shape[0]
        flat = self.embed[input_ids].reshape(batch, -1)  # (B, L*d)
        logits = (flat @ self.proj).reshape(batch, self.length, VOCAB)  # (B, L, V)
        return logits.masked_fill(torch.arange(VOCAB) == MASK_ID, float("-inf"))


class CountingFn:
    """Wraps a logits function, counting forward passes and recording the canvases it saw."""

    def __init__(self, fn) -> None:
        self.fn, self.calls, self.canvases = fn, 0, []

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        self.calls += 1
        self.canvases.append(input_ids.clone())
        return self.fn(input_ids, attention_mask)


def order_log_likelihood(model, prompt: Tensor, answer: Tensor, order: tuple[int, ...]) -> float:
    """log p of the answer when the model decodes its positions in `order`, one token at a time."""
    canvas = torch.cat([prompt, torch.full_like(answer, MASK_ID)])  # (P + T,)
    total = 0.0
    for pos in order:
        logits = model(canvas[None], None)[0, prompt.numel() + pos]  # (V,)
        total += logits.log_softmax(-1)[answer[pos]].item()
        canvas[prompt.numel() + pos] = answer[pos]
    return total


PROMPT = torch.tensor([1, 3])
ANSWER = torch.tensor([0, 4, 2, 2])


@pytest.mark.parametrize("batch_size", [1, 48])
def test_mc_estimate_agrees_with_exact_elbo_on_context_model(batch_size: int) -> None:
    """batch_size 1 gives iid samples (exact standard error); 48 stratifies l (conservative one).

    48 does not divide 2000, so the last, smaller batch is stratified on its own.
    """
    model = TinyNet(PROMPT.numel() + ANSWER.numel(), seed=1)
    exact = exact_elbo(model, PROMPT, ANSWER, MASK_ID)
    gen = torch.Generator().manual_seed(0)
    estimate, stderr = conditional_log_likelihood(
        model, PROMPT, ANSWER, MASK_ID, mc_samples=2000, batch_size=batch_size, generator=gen
    )
    assert 0.0 < stderr.item() < 0.1
    assert abs(estimate.item() - exact.item()) < 3 * stderr.item()


def test_mc_estimate_is_reproducible_with_a_seeded_generator() -> None:
    model = TinyNet(PROMPT.numel() + ANSWER.numel(), seed=1)
    runs = [
        conditional_log_likelihood(
            model,
            PROMPT,
            ANSWER,
            MASK_ID,
            mc_samples=64,
            generator=torch.Generator().manual_seed(3),
        )
        for _ in range(2)
    ]
    assert runs[0][0].item() == runs[1][0].item()
    assert runs[0][1].item() == runs[1][1].item()


def test_context_free_bound_is_the_exact_log_likelihood() -> None:
    model = ContextFree(PROMPT.numel() + ANSWER.numel(), seed=2)
    truth = model.log_marginals(PROMPT.numel(), ANSWER)
    torch.testing.assert_close(exact_elbo(model, PROMPT, ANSWER, MASK_ID), truth)
    torch.testing.assert_close(chain_rule_log_likelihood(model, PROMPT, ANSWER, MASK_ID), truth)
    gen = torch.Generator().manual_seed(1)
    estimate, stderr = conditional_log_likelihood(
        model, PROMPT, ANSWER, MASK_ID, mc_samples=1000, generator=gen
    )
    # Each sample (T/l) * sum_{i in S} log p_i is random even here; only its mean is exact.
    assert stderr.item() > 0.0
    assert abs(estimate.item() - truth.item()) < 3 * stderr.item()


def test_exact_elbo_is_the_mean_over_orders_and_below_the_random_order_likelihood() -> None:
    """What holds for ANY model, consistent or not.

    Eq. 6 equals the average over all T! decoding orders of the order's autoregressive log-likelihood
    log p_sigma(r). Each p_sigma is a normalised distribution, and the random-order sampler's
    likelihood is mean_sigma p_sigma(r), so by Jensen ELBO <= log mean_sigma p_sigma(r). The ELBO is NOT
    in general below the left-to-right chain rule log p_id(r): that is one term of the average and can
    sit on either side of it. Only for a consistent model (all orders give the same joint, e.g. one
    that ignores context) do all these coincide.
    """
    answer = ANSWER[:3]
    model = TinyNet(PROMPT.numel() + answer.numel(), seed=4)
    per_order = torch.tensor(
        [
            order_log_likelihood(model, PROMPT, answer, order)
            for order in itertools.permutations(range(answer.numel()))
        ],
        dtype=torch.float64,
    )  # (T!,)
    elbo = exact_elbo(model, PROMPT, answer, MASK_ID)
    torch.testing.assert_close(elbo.double(), per_order.mean(), atol=1e-5, rtol=0)
    mixture = torch.logsumexp(per_order, 0) - math.log(per_order.numel())
    assert elbo.item() <= mixture.item() + 1e-6
    # The orders disagree, so this model is inconsistent and the bound is strict here.
    assert per_order.max() - per_order.min() > 0.1
    chain = chain_rule_log_likelihood(model, PROMPT, answer, MASK_ID)
    assert chain.item() == pytest.approx(per_order[0].item(), abs=1e-5)  # identity order first


def test_chain_rule_is_a_normalised_distribution_over_answers() -> None:
    """A chain rule that leaked answer_i into row i would not sum to 1 over all answers."""
    length = 3
    model = TinyNet(PROMPT.numel() + length, seed=5)
    answers = torch.tensor(list(itertools.product(range(MASK_ID), repeat=length)))  # (5^T, T)
    chain = torch.stack([chain_rule_log_likelihood(model, PROMPT, a, MASK_ID) for a in answers])
    assert chain.double().exp().sum().item() == pytest.approx(1.0, abs=1e-4)
    # The bound sums to at most 1 (strictly less for this inconsistent model).
    elbo = torch.stack([exact_elbo(model, PROMPT, a, MASK_ID) for a in answers])
    assert elbo.double().exp().sum().item() < 1.0


def test_answer_of_one_token_is_exact_with_one_forward_pass() -> None:
    model = TinyNet(PROMPT.numel() + 1, seed=6)
    answer = torch.tensor([3])
    counted = CountingFn(model)
    estimate, stderr = conditional_log_likelihood(
        counted, PROMPT, answer, MASK_ID, mc_samples=128, batch_size=32
    )
    assert counted.calls == 1
    assert stderr.item() == 0.0
    canvas = torch.cat([PROMPT, torch.tensor([MASK_ID])])[None]  # (1, P + 1)
    expected = model(canvas)[0, -1].log_softmax(-1)[3]
    torch.testing.assert_close(estimate, expected)
    torch.testing.assert_close(exact_elbo(model, PROMPT, answer, MASK_ID), expected)
    torch.testing.assert_close(chain_rule_log_likelihood(model, PROMPT, answer, MASK_ID), expected)


def test_mc_rows_keep_the_prompt_and_mask_between_one_and_all_answer_tokens() -> None:
    counted = CountingFn(ContextFree(PROMPT.numel() + ANSWER.numel()))
    conditional_log_likelihood(
        counted, PROMPT, ANSWER, MASK_ID, mc_samples=40, batch_size=8,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert counted.calls == 5
    canvases = torch.cat(counted.canvases)  # (40, P + T)
    assert bool((canvases[:, : PROMPT.numel()] == PROMPT).all())
    answer_part = canvases[:, PROMPT.numel() :]  # (40, T)
    masked = answer_part == MASK_ID
    assert bool((masked | (answer_part == ANSWER)).all())
    counts = masked.sum(1)
    assert set(counts.tolist()) == set(range(1, ANSWER.numel() + 1))
    # batch 8 = 2 * T: stratification puts every l exactly twice in each batch.
    for batch in counts.view(5, 8):
        assert torch.bincount(batch, minlength=5)[1:].tolist() == [2, 2, 2, 2]


@pytest.mark.parametrize(("answer_len", "batch"), [(4, 8), (5, 3), (7, 32), (1, 4), (6, 6)])
def test_stratified_counts_follow_the_documented_rule_and_stay_in_range(
    answer_len: int, batch: int
) -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        counts = stratified_mask_counts(answer_len, batch, gen)
        assert counts.dtype == torch.long and counts.shape == (batch,)
        assert bool(((counts >= 1) & (counts <= answer_len)).all())
        k = counts[0].item()  # j = 0 has offset 0, so l_0 = k
        for j, value in enumerate(counts.tolist()):
            offset = math.floor(Fraction(j * answer_len, batch) + Fraction(1, 2))  # half-up
            assert value == (k + offset - 1) % answer_len + 1


@pytest.mark.parametrize(("answer_len", "batch"), [(4, 8), (5, 3), (3, 7)])
def test_stratified_counts_are_uniform_for_every_row(answer_len: int, batch: int) -> None:
    """Each row's l must be U{1..T} on its own, or eq. 6 is biased.

    (4, 8) is the case where round-half-to-even would give row 1 only the values 2 and 4.
    """
    gen = torch.Generator().manual_seed(1)
    draws = 3000
    counts = torch.stack([stratified_mask_counts(answer_len, batch, gen) for _ in range(draws)])
    expected = draws / answer_len
    for row in counts.T:  # (draws,) the l of one row position j
        freq = torch.bincount(row - 1, minlength=answer_len).double()  # (T,)
        chi2 = ((freq - expected) ** 2 / expected).sum().item()
        assert chi2 < 25.0  # df <= 4: p < 1e-4 for a uniform row


def test_exact_elbo_refuses_long_answers() -> None:
    answer = torch.zeros(MAX_EXACT_ANSWER_LEN + 1, dtype=torch.long)
    with pytest.raises(ValueError, match=f"at most {MAX_EXACT_ANSWER_LEN} tokens"):
        exact_elbo(ContextFree(20), PROMPT, answer, MASK_ID)


def test_inputs_must_be_single_sequences() -> None:
    with pytest.raises(ValueError, match="1-D"):
        conditional_log_likelihood(ContextFree(8), PROMPT[None], ANSWER, MASK_ID)
    with pytest.raises(ValueError, match="at least one token"):
        chain_rule_log_likelihood(ContextFree(8), PROMPT, ANSWER[:0], MASK_ID)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elbo_bucket_index_edges(dtype: torch.dtype) -> None:
    t = torch.tensor([0.0, 0.0999, 0.1, 0.5, 0.95, 1.0], dtype=dtype)
    assert elbo_bucket_index(t).tolist() == [0, 0, 1, 5, 9, 9]
    assert elbo_bucket_index(t, n_buckets=4).tolist() == [0, 0, 0, 2, 3, 3]
