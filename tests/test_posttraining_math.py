"""Post-training maths (GRPO, VRPO) against hand computations on a tiny real transformer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llada.diffusion.grpo import DiffuGRPO, clipped_objective, group_advantages, k3_kl
from llada.diffusion.likelihood import exact_elbo
from llada.diffusion.policy_logprob import ELBOLogProbs, MeanFieldLogProbs
from llada.diffusion.vrpo import VRPO, dpo_loss
from llada.models.native import NativeTransformer

VOCAB, MASK = 12, 11


def tiny(seed: int = 0) -> NativeTransformer:
    """A 1-layer model with large random weights, so its predictions depend on the input."""
    torch.manual_seed(seed)
    return NativeTransformer(VOCAB, dim=32, n_layers=1, n_heads=2, max_len=16, init_std=0.3).eval()


def rows() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two filled rows of 8 tokens: a prompt of 5 and a completion of 3 (the last row padded)."""
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8], [2, 3, 4, 5, 1, 9, 10, 0]])
    attention = torch.tensor([[1] * 8, [1] * 7 + [0]])
    completion = torch.zeros(2, 8, dtype=torch.bool)
    completion[0, 5:] = True
    completion[1, 4:7] = True
    return tokens, completion, attention


def test_group_advantages_by_hand() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    centred = group_advantages(rewards, scale=False)
    assert torch.allclose(centred[0], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    scaled = group_advantages(rewards, scale=True, eps=0.0 + 1e-4)
    std = math.sqrt(4 * 0.25 / 3)  # unbiased std of (1, 0, 0, 1)
    assert torch.allclose(scaled[0], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (std + 1e-4))
    assert torch.equal(scaled[1], torch.zeros(4))  # equal rewards teach nothing


def test_clipped_objective_by_hand() -> None:
    """Two completions, two units each: every term written out."""
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]])
    old = torch.tensor([[-1.5, -2.0], [-0.5, -2.0]])
    ref = torch.tensor([[-1.2, -1.8], [-0.7, -2.5]])
    advantages = torch.tensor([1.0, -2.0])
    weights = torch.tensor([[0.5, 0.5], [1.0, 0.0]])  # the second's second unit is not scored
    eps, beta = 0.2, 0.1
    loss, stats = clipped_objective(logp, old, ref, advantages, weights, eps, beta)
    total = 0.0
    for i in range(2):
        for k in range(2):
            rho = math.exp(logp[i, k] - old[i, k])
            a = float(advantages[i])
            surrogate = min(rho * a, min(max(rho, 1 - eps), 1 + eps) * a)
            d = float(ref[i, k] - logp[i, k])
            kl = math.exp(d) - d - 1
            total += float(weights[i, k]) * (surrogate - beta * kl)
    assert loss.item() == pytest.approx(-total / 2, rel=1e-6)
    # Unit (0, 0): ratio e^0.5 = 1.65 is clipped; (1, 0) and (0, 1): ratio 1 is not.
    assert stats["clip_fraction"].item() == pytest.approx(1 / 3)
    assert float(k3_kl(torch.tensor(-1.0), torch.tensor(-1.0))) == 0.0


def test_mean_field_estimator_is_one_forward_pass_with_the_completion_masked() -> None:
    model = tiny()
    tokens, completion, attention = rows()
    estimator = MeanFieldLogProbs(prompt_mask_prob=0.4)
    torch.manual_seed(3)
    noise = estimator.draw(tokens, completion, attention)
    assert not (noise & completion).any() and not (noise & ~attention.bool()).any()
    values, weights = estimator.units(model, tokens, completion, attention, noise, MASK)
    # By hand: mask the completion and the drawn prompt tokens, one pass, log-softmax, gather.
    noisy = tokens.clone()
    noisy[completion | noise] = MASK
    logp = F.log_softmax(model(noisy, attention), dim=-1)  # (B, L, V)
    for b in range(2):
        for i in range(8):
            expected = float(logp[b, i, tokens[b, i]]) if completion[b, i] else 0.0
            assert float(values[b, i]) == pytest.approx(expected, abs=1e-5)
    assert torch.allclose(weights.sum(dim=1), torch.ones(2))
    assert torch.equal(weights > 0, completion)


def test_elbo_estimator_agrees_with_exact_enumeration() -> None:
    """A suffix completion: the MC mean of the eq. 6 bound lands within 4 standard errors of the
    exact value from enumerating every mask subset."""
    model = tiny(1)
    prompt, answer = torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8])
    tokens = torch.cat([prompt, answer])[None]  # (1, 8)
    completion = torch.zeros(1, 8, dtype=torch.bool)
    completion[0, 4:] = True
    exact = float(exact_elbo(model, prompt, answer, MASK))
    estimator = ELBOLogProbs(n_times=1)
    torch.manual_seed(0)
    with torch.no_grad():
        draws = torch.stack([
            estimator.sequence(
                model, tokens, completion, None, estimator.draw(tokens, completion, None), MASK
            )[0]
            for _ in range(400)
        ])  # fmt: skip
    mean, se = float(draws.mean()), float(draws.std() / math.sqrt(len(draws)))
    assert se > 0
    assert abs(mean - exact) < 4 * se, (mean, exact, se)
    # Its per-token unit is the bound over the completion's length.
    units, weights = estimator.units(model, tokens, completion, None, estimator.draw(
        tokens, completion, None), MASK)  # fmt: skip
    assert units.shape == weights.shape == (1, 1)


def test_elbo_draws_mask_only_completion_positions_and_at_least_one() -> None:
    tokens, completion, attention = rows()
    torch.manual_seed(0)
    noise = ELBOLogProbs(n_times=5, masks_per_time=3).draw(tokens, completion, attention)
    assert noise.shape == (15, 2, 8)
    assert not (noise & ~completion).any()
    counts = noise.sum(dim=2)  # (15, 2)
    assert (counts >= 1).all() and (counts <= 3).all()
    assert torch.equal(counts[0], counts[2])  # one timestep (l), three masks


def vrpo_loss_spread(antithetic: bool, draws: int = 60) -> float:
    """Std of the VRPO loss estimate over repeated draws: policy and reference differ a little."""
    policy, reference = tiny(2), tiny(2)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    objective = VRPO(
        mask_id=MASK, beta=0.5, estimator=ELBOLogProbs(n_times=2), antithetic=antithetic,
        reference=reference,
    )  # fmt: skip
    tokens, completion, _ = rows()
    prompt_mask = (~completion).long()
    batch = {}
    for which, ids in (("chosen", tokens), ("rejected", tokens.flip(1))):
        batch[f"{which}_input_ids"] = ids
        batch[f"{which}_attention_mask"] = torch.ones_like(ids)
        batch[f"{which}_prompt_mask"] = prompt_mask
    torch.manual_seed(0)
    with torch.no_grad():
        losses = torch.stack([objective.preference_loss(policy, batch)[0] for _ in range(draws)])
    return float(losses.std())


def test_antithetic_sampling_lowers_the_variance_of_the_vrpo_loss() -> None:
    shared, independent = vrpo_loss_spread(True), vrpo_loss_spread(False)
    assert shared < 0.5 * independent, (shared, independent)


def test_dpo_loss_by_hand() -> None:
    loss, margins = dpo_loss(
        torch.tensor([-3.0]), torch.tensor([-4.0]), torch.tensor([-5.0]), torch.tensor([-4.5]), 0.1
    )
    margin = 0.1 * ((-3 + 4) - (-5 + 4.5))
    assert margins.item() == pytest.approx(margin)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-margin))))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"group_size": 1}, "group_size=1"),
        ({"inner_steps": 0}, "inner_steps"),
        ({"reward": "sudoku"}, "reward must be a callable"),
    ],
)
def test_bad_grpo_options_fail_in_one_line(options: dict, message: str) -> None:
    kwargs = {"reward": lambda filled, reference: 0.0, "mask_id": MASK, **options}
    with pytest.raises(ValueError, match=message) as error:
        DiffuGRPO(**kwargs)
    assert "\n" not in str(error.value)


def test_grpo_step_on_a_tiny_model_learns_from_rewards() -> None:
    """Rollouts, rewards from text, one update: the loss has a gradient, the logs are finite, and
    checkpoints of the run are MDM checkpoints."""
    model = tiny(4).train()
    objective = DiffuGRPO(
        reward=lambda filled, reference: float(filled.split()[-1] == "7"),
        group_size=4, mask_id=MASK, eos_id=0,
    )  # fmt: skip

    class Words:
        def batch_decode(self, ids: torch.Tensor, skip_special_tokens: bool) -> list[str]:
            return [" ".join(str(int(t)) for t in row) for row in ids]

    objective.bind(model, Words())
    tokens, completion, attention = rows()
    batch = {"input_ids": tokens, "attention_mask": attention, "prompt_mask": (~completion).long()}
    torch.manual_seed(0)
    out = objective.training_loss(model, batch)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert objective.rollouts is not None and objective.rollouts.tokens.shape == (8, 8)
    filled = objective.rollouts.tokens
    assert torch.equal(filled[~objective.rollouts.completion], tokens.repeat_interleave(4, 0)[
        ~objective.rollouts.completion])  # fmt: skip
    assert not (filled == MASK).any()
    assert all(torch.isfinite(v) for v in out.logs.values())
    assert objective.recipe()["_target_"] == "llada.diffusion.mdm.MaskedDiffusion"
