"""`objective=grpo`: d1's diffu-GRPO, reinforcement learning with verifiable rewards for an MDM.

Each optimizer step on a fresh batch of B prompts (rows whose completion positions are masked)
rolls out G completions per prompt with the model's own reverse process, scores them with the
reward (text in, float out) and turns the rewards into group-relative advantages
A_i = (r_i - mean_G r) / (std_G r + eps). The loss (ALGORITHMS.md section 9) is the clipped
importance-weighted advantage minus beta times the k3 KL estimate to a frozen reference model,
averaged per completion token and over the B x G completions. One batch of rollouts serves
`inner_steps` (mu) optimizer steps; the estimator's draws (d1: which prompt tokens are masked)
are taken once per inner step at rollout time and reused for the old policy, the reference and the
policy, as d1 does. The rollouts live in the objective's state, so a resumed run continues them.

The trained model is an MDM: checkpoints carry `mdm`'s recipe, so `llada.generate` / `llada.eval`
read them as any MDM checkpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from llada.diffusion.mdm import MaskedDiffusion
from llada.diffusion.objective import Batch, TrainingLoss
from llada.diffusion.policy_logprob import LogProbEstimator, MeanFieldLogProbs
from llada.diffusion.remasking import LowConfidenceRemasking, Remasking
from llada.diffusion.sampling import LogitsFn
from llada.diffusion.token_choice import Multinomial

Reward = Callable[[str, str], float]  # (filled text, reference text) -> reward


def group_advantages(rewards: Tensor, scale: bool = True, eps: float = 1e-4) -> Tensor:
    """rewards (B, G) -> advantages (B, G): minus the group mean, over the group's std if `scale`.

    The std is the unbiased one (as TRL's GRPO computes it); a group whose rewards are all equal
    gets advantages 0 (it teaches nothing).
    """
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + eps)


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Schulman's k3 estimate of KL(pi || ref) per unit: e^(r - p) - (r - p) - 1 >= 0."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def clipped_objective(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor,
    advantages: Tensor,
    weights: Tensor,
    clip_eps: float,
    kl_beta: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GRPO's loss over N completions of K units each (d1's eq. with per-unit ratios).

    logp / old_logp / ref_logp / weights (N, K), advantages (N,). Returns (loss, stats): loss =
    -mean_i sum_k w_ik [min(rho A_i, clip(rho, 1 - eps, 1 + eps) A_i) - beta KL_ik].
    """
    ratio = torch.exp(logp - old_logp)  # (N, K)
    gain = advantages[:, None]  # (N, 1)
    surrogate = torch.minimum(ratio * gain, ratio.clamp(1 - clip_eps, 1 + clip_eps) * gain)
    kl = k3_kl(logp, ref_logp)  # (N, K)
    loss = -((surrogate - kl_beta * kl) * weights).sum(dim=1).mean()
    scored = weights > 0
    clipped = ((ratio - 1).abs() > clip_eps) & scored
    stats = {
        "kl": (kl * weights).sum(dim=1).mean().detach(),
        "clip_fraction": (clipped.sum() / scored.sum().clamp_min(1)).detach(),
    }
    return loss, stats


@dataclass
class Rollouts:
    """One batch of completions and what each inner step needs; all (N, ...) with N = B * G."""

    tokens: Tensor  # (N, L) the filled rows
    completion: Tensor  # (N, L) bool: generated positions
    attention_mask: Tensor  # (N, L)
    rewards: Tensor  # (N,)
    advantages: Tensor  # (N,)
    noises: list[Tensor]  # per inner step: the estimator's draws
    old_units: list[Tensor]  # per inner step (N, K): the rollout policy's estimate
    ref_units: list[Tensor]  # per inner step (N, K): the reference model's estimate
    started_at: int  # the optimizer step that rolled them out

    def to_state(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def frozen_copy(backbone: nn.Module) -> nn.Module:
    """A reference network: the same weights now, never trained, in eval mode."""
    reference = copy.deepcopy(backbone).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference


class DiffuGRPO(MaskedDiffusion):
    """diffu-GRPO on top of the MDM objective (validation stays the MDM's conditional ELBO)."""

    init_from_kinds: ClassVar[tuple[str, ...]] = ("diffusion",)
    needs_init_from: ClassVar[bool] = True

    def __init__(
        self,
        *,
        reward: Reward,
        group_size: int = 4,
        inner_steps: int = 1,
        clip_eps: float = 0.2,
        kl_beta: float = 0.04,
        scale_rewards: bool = True,
        estimator: LogProbEstimator | None = None,
        temperature: float = 1.0,
        steps: int | None = None,
        block_length: int | None = None,
        remasking: Remasking | None = None,
        reference: nn.Module | None = None,
        **mdm_options: Any,
    ) -> None:
        """`reward(filled, reference) -> float` (llada.data.rewards); `steps` None: one step per
        completion token; `reference`: the KL reference network (default: the policy as bound)."""
        super().__init__(**mdm_options)
        if group_size < 2:
            raise ValueError(
                f"objective.group_size={group_size}: GRPO's advantages compare the completions of "
                "one prompt, so it needs at least 2 (d1 uses 6-8); set objective.group_size=4"
            )
        if inner_steps < 1:
            raise ValueError(f"objective.inner_steps must be >= 1, got {inner_steps}")
        if not callable(reward):
            raise ValueError(
                f"objective.reward must be a callable (filled, reference), got {reward!r}"
            )
        self.reward, self.group_size, self.inner_steps = reward, int(group_size), int(inner_steps)
        self.clip_eps, self.kl_beta, self.scale_rewards = clip_eps, kl_beta, scale_rewards
        self.estimator = estimator or MeanFieldLogProbs()
        self.chooser = Multinomial(temperature)
        self.steps, self.block_length = steps, block_length
        self.remasking = remasking or LowConfidenceRemasking()
        self.reference = reference
        self.rollouts: Rollouts | None = None
        self.decode_text: Callable[[Tensor], list[str]] | None = None

    def options(self) -> dict[str, Any]:
        """Every option (the config group's keys); checkpoints keep only the MDM's (`recipe`)."""
        return {
            **super().options(),
            "reward": self.reward, "group_size": self.group_size,
            "inner_steps": self.inner_steps, "clip_eps": self.clip_eps, "kl_beta": self.kl_beta,
            "scale_rewards": self.scale_rewards, "estimator": self.estimator,
            "temperature": self.chooser.temperature, "steps": self.steps,
            "block_length": self.block_length, "remasking": self.remasking,
            "reference": self.reference,
        }  # fmt: skip

    def recipe(self) -> dict[str, Any]:
        """The trained network is an MDM: checkpoints say so (generate/eval read them as such)."""
        return {"_target_": "llada.diffusion.mdm.MaskedDiffusion", **MaskedDiffusion.options(self)}

    def bind(self, backbone: nn.Module, tokenizer: Any) -> None:
        """Texts for the reward come from the model's tokenizer; the reference is a frozen copy
        of the policy as built (the checkpoint it starts from) unless one was given."""
        self.decode_text = lambda ids: tokenizer.batch_decode(ids, skip_special_tokens=True)
        if self.reference is None:
            self.reference = frozen_copy(backbone)

    # --------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        return {"rollouts": self.rollouts.to_state()} if self.rollouts is not None else {}

    def load_state(self, state: dict[str, Any]) -> None:
        saved = state.get("rollouts")
        self.rollouts = Rollouts(**saved) if saved else None

    # ------------------------------------------------------------ rollouts
    @torch.no_grad()
    def roll_out(self, backbone: LogitsFn, batch: Batch) -> Rollouts:
        """G completions per prompt row, their rewards, advantages and the estimators' draws."""
        if self.decode_text is None or self.reference is None:
            raise RuntimeError("DiffuGRPO.bind(backbone, tokenizer) must run before training")
        reference_ids = batch["input_ids"].repeat_interleave(self.group_size, dim=0)  # (N, L)
        attention = batch["attention_mask"].repeat_interleave(self.group_size, dim=0)
        given = batch["prompt_mask"].bool().repeat_interleave(self.group_size, dim=0)
        completion = attention.bool() & ~given  # (N, L)
        canvas = reference_ids.masked_fill(completion, self.mask_id)
        steps = self.steps or int(completion.sum(dim=1).max())
        result = self.decode(
            backbone,
            canvas,
            steps=steps,
            chooser=self.chooser,
            remasking=self.remasking,
            attention_mask=attention,
            block_length=self.block_length,
        )
        tokens = result.tokens  # (N, L)
        filled, expected = self.decode_text(tokens), self.decode_text(reference_ids)
        rewards = torch.tensor(
            [float(self.reward(f, e)) for f, e in zip(filled, expected, strict=True)],
            device=tokens.device,
        )  # (N,)
        advantages = group_advantages(rewards.view(-1, self.group_size), self.scale_rewards)
        self.reference.to(tokens.device)
        noises, old_units, ref_units = [], [], []
        for _ in range(self.inner_steps):
            noise = self.estimator.draw(tokens, completion, attention)
            noises.append(noise)
            ref_units.append(self._units(self.reference, tokens, completion, attention, noise))
            if self.inner_steps > 1:  # mu = 1: the old policy is the policy itself (ratio 1)
                old_units.append(self._units(backbone, tokens, completion, attention, noise))
        return Rollouts(
            tokens, completion, attention, rewards, advantages.reshape(-1),
            noises, old_units, ref_units, started_at=self.step,
        )  # fmt: skip

    def _units(self, network: LogitsFn, tokens: Tensor, completion: Tensor, attention: Tensor,
               noise: Tensor) -> Tensor:  # fmt: skip
        values, _ = self.estimator.units(
            network, tokens, completion, attention, noise, self.mask_id
        )
        return values

    # -------------------------------------------------------------- training
    def training_loss(self, backbone: LogitsFn, batch: Batch) -> TrainingLoss:
        inner = self.step - self.rollouts.started_at if self.rollouts is not None else None
        if inner is None or not 0 <= inner < self.inner_steps:
            self.rollouts, inner = self.roll_out(backbone, batch), 0
        r = self.rollouts
        logp, weights = self.estimator.units(
            backbone, r.tokens, r.completion, r.attention_mask, r.noises[inner], self.mask_id
        )  # (N, K) each
        old = r.old_units[inner] if r.old_units else logp.detach()
        loss, stats = clipped_objective(
            logp, old, r.ref_units[inner], r.advantages, weights, self.clip_eps, self.kl_beta
        )
        groups = r.rewards.view(-1, self.group_size)  # (B, G)
        generated = (
            r.completion if self.eos_id is None else r.completion & (r.tokens != self.eos_id)
        )
        logs = {
            "train/reward": r.rewards.mean(),
            "train/reward_std": groups.std(dim=1).mean(),
            "train/accuracy": (r.rewards >= 1.0).float().mean(),
            "train/kl": stats["kl"],
            "train/clip_fraction": stats["clip_fraction"],
            "train/completion_length": generated.sum(dim=1).float().mean(),
        }
        return TrainingLoss(loss, tokens=r.completion.sum() if inner == 0 else None, logs=logs)
