"""Masking schedules and the pretraining loss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from llada.diffusion.losses import masked_nll_per_row, masked_token_nll
from llada.diffusion.mdm import MaskedDiffusion
from llada.diffusion.noising import mask_tokens, noise_batch, sample_times
from llada.diffusion.schedules import (
    CosineSchedule,
    FixedRatioSchedule,
    LinearSchedule,
    PowerSchedule,
)

ELBO_SCHEDULES = [LinearSchedule(), CosineSchedule(), PowerSchedule(k=2.0), PowerSchedule(k=0.5)]


@pytest.mark.parametrize("schedule", ELBO_SCHEDULES, ids=repr)
def test_schedule_endpoints_monotone_and_weight(schedule) -> None:
    t = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)
    m = schedule.mask_prob(t)
    assert m[0].item() == pytest.approx(schedule.eps, abs=1e-9)
    assert m[-1].item() == pytest.approx(1.0, abs=1e-9)
    assert bool((m[1:] >= m[:-1]).all())
    # w(t) = m'(t) / m(t) against a central finite difference.
    inner = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    numeric = (schedule.mask_prob(inner + h) - schedule.mask_prob(inner - h)) / (2 * h)
    torch.testing.assert_close(schedule.weight(inner), numeric / schedule.mask_prob(inner))


def test_linear_loss_weight_is_llada_one_over_mask_prob() -> None:
    t = torch.tensor([0.1, 0.5, 1.0])
    expected = 1.0 / ((1 - 1e-3) * t + 1e-3)
    torch.testing.assert_close(LinearSchedule().loss_weight(t), expected)


def test_fixed_ratio_is_flagged_not_elbo() -> None:
    schedule = FixedRatioSchedule(ratio=0.15)
    assert not schedule.is_elbo
    assert schedule.mask_prob(torch.rand(5)).eq(0.15).all()


def test_bad_t_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="t_min < t_max"):
        LinearSchedule(t_min=0.6, t_max=0.4)


def test_sample_times_range_and_antithetic_spacing() -> None:
    gen = torch.Generator().manual_seed(0)
    t = sample_times(8, t_min=0.2, t_max=0.6, antithetic=True, generator=gen)
    assert bool(((t >= 0.2) & (t <= 0.6)).all())
    unit = torch.sort((t - 0.2) / 0.4).values
    torch.testing.assert_close(unit[1:] - unit[:-1], torch.full((7,), 1 / 8), atol=1e-5, rtol=0)


def test_mask_tokens_rate_and_maskable() -> None:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (64, 256), generator=gen)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, :10] = False
    noisy, masked = mask_tokens(ids, torch.full((64,), 0.3), 1, maskable=maskable, generator=gen)
    assert not masked[:, :10].any()
    rate = masked[:, 10:].float().mean().item()
    assert abs(rate - 0.3) < 0.01
    assert bool((noisy[masked] == 1).all()) and bool((noisy[~masked] == ids[~masked]).all())


def test_pretraining_elbo_matches_hand_computation() -> None:
    """The mdm objective's loss: sum of w(t) * CE over masked tokens / token slots (eq. 3)."""
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]]))  # (1, 2, 3)
    targets = torch.tensor([[0, 1]])
    masked = torch.tensor([[True, False]])
    nll = masked_token_nll(logits, targets, masked)
    assert nll[0, 0].item() == pytest.approx(math.log(2))
    assert nll[0, 1].item() == 0.0


def test_mdm_loss_is_the_weighted_masked_cross_entropy_per_slot() -> None:
    """The mdm objective's draw = sum of w(t) * CE over masked tokens / token slots (eq. 3),
    recomputed here from the same (t, mask) draw."""
    vocab, schedule = 11, LinearSchedule()
    ids = torch.randint(1, vocab, (4, 9), generator=torch.Generator().manual_seed(1))
    net = torch.nn.Embedding(vocab, vocab)
    objective = MaskedDiffusion(mask_id=0, schedule=schedule)
    row_nll, slots, t = objective.weighted_nll(
        lambda x, mask: net(x), ids, None, torch.Generator().manual_seed(0)
    )
    noisy, masked, t_again = noise_batch(
        ids, schedule, 0, antithetic=True, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(t, t_again)
    nll = masked_token_nll(net(noisy), ids, masked)  # (B, L)
    expected = (nll * schedule.loss_weight(t)[:, None]).sum() / ids.numel()
    assert slots.tolist() == [9.0] * 4
    assert (row_nll.sum() / slots.sum()).item() == pytest.approx(expected.item(), rel=1e-5)


def test_masked_nll_per_row_equals_full_logits_path() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=gen)
    targets = torch.randint(0, 11, (3, 7), generator=gen)
    masked = torch.rand(3, 7, generator=gen) < 0.5
    per_row = masked_nll_per_row(logits[masked], targets, masked)
    torch.testing.assert_close(per_row, masked_token_nll(logits, targets, masked).sum(dim=1))


def test_antithetic_time_same_mean_lower_variance() -> None:
    """Antithetic t keeps the loss estimate's mean and cuts the variance that comes from t.

    The toy model is sure of the clean token in proportion to how much of its row is visible, so
    its expected loss depends on t (as a real model's does; a context-free model's would not).
    """
    gen = torch.Generator().manual_seed(0)
    vocab, length, batch = 7, 64, 16
    ids = torch.randint(1, vocab, (batch, length), generator=gen)
    truth = torch.nn.functional.one_hot(ids, vocab).float()  # (B, L, V)
    schedule = LinearSchedule()

    def estimate(antithetic: bool) -> float:
        _, masked, t = noise_batch(ids, schedule, 0, antithetic=antithetic, generator=gen)
        visible = 1.0 - masked.float().mean(dim=1)  # (B,)
        logits = 4.0 * visible[:, None, None] * truth  # (B, L, V)
        weighted = masked_token_nll(logits, ids, masked) * schedule.loss_weight(t)[:, None]
        return float(weighted.sum() / ids.numel())

    iid = torch.tensor([estimate(False) for _ in range(1500)])
    anti = torch.tensor([estimate(True) for _ in range(1500)])
    stderr = (iid.var() / len(iid) + anti.var() / len(anti)).sqrt()
    assert abs(iid.mean() - anti.mean()) < 3 * stderr
    assert anti.var() < 0.8 * iid.var()


def test_noise_never_masks_unmaskable_positions() -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(50):
        ids = torch.randint(2, 50, (4, 12), generator=gen)
        maskable = torch.rand(4, 12, generator=gen) < 0.5
        noisy, masked, _ = noise_batch(
            ids, LinearSchedule(), 1, maskable=maskable, antithetic=True, generator=gen
        )
        assert not masked[~maskable].any()
        assert torch.equal(noisy[~maskable], ids[~maskable])


def test_full_range_ignores_training_t_range() -> None:
    schedule = LinearSchedule(t_min=0.5, t_max=0.6)
    ids = torch.randint(2, 50, (256, 4))
    gen = torch.Generator().manual_seed(2)
    _, _, t_train = noise_batch(ids, schedule, 1, generator=gen)
    _, _, t_eval = noise_batch(ids, schedule, 1, full_range=True, generator=gen)
    assert bool(((t_train >= 0.5) & (t_train <= 0.6)).all())
    assert t_eval.min() < 0.1 and t_eval.max() > 0.9


def test_results_are_labelled_by_what_the_bound_is() -> None:
    """An ELBO schedule gives an ELBO perplexity; fixed-ratio masking (BERT) gives no bound."""
    from llada.diffusion.next_token import NextToken
    from llada.diffusion.schedules import FixedRatioSchedule

    assert MaskedDiffusion(mask_id=0).perplexity_label() == "ELBO perplexity"
    not_a_bound = MaskedDiffusion(mask_id=0, schedule=FixedRatioSchedule())
    assert "no ELBO" in not_a_bound.perplexity_label()
    assert NextToken(mask_id=0, eos_id=1).perplexity_label() == "perplexity (exact)"
