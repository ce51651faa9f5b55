"""`objective=vrpo`: LLaDA 1.5's variance-reduced preference optimisation (DPO with ELBOs).

DPO needs log pi(y | x) of a chosen and a rejected answer under the policy and a frozen
reference; an MDM gives only its ELBO B(y | x), estimated by Monte Carlo. The loss
-log sigmoid(beta [(B_pi(y_w) - B_ref(y_w)) - (B_pi(y_l) - B_ref(y_l))]) (ALGORITHMS.md section 9)
is then noisy, and LLaDA 1.5's three variance reductions are options here:
- the budget: `estimator.n_times * estimator.masks_per_time` (l, mask) draws per estimate;
- its allocation: many timesteps with one mask each (`masks_per_time=1`) beats few with many;
- `antithetic=true`: B_pi and B_ref of the same answer share their draws, so the difference of
  two correlated estimates has far less variance than each (false: independent draws).

Batches hold both answers as rows (`chosen_*` and `rejected_*`: input_ids, attention_mask,
prompt_mask). Validation is the MDM's conditional ELBO of the chosen answers. Checkpoints carry
`mdm`'s recipe, as GRPO's do.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llada.diffusion.grpo import frozen_copy
from llada.diffusion.mdm import MaskedDiffusion
from llada.diffusion.objective import Batch, RowNLL, TrainingLoss
from llada.diffusion.policy_logprob import ELBOLogProbs
from llada.diffusion.sampling import LogitsFn

ANSWERS = ("chosen", "rejected")


def dpo_loss(
    policy_chosen: Tensor,
    reference_chosen: Tensor,
    policy_rejected: Tensor,
    reference_rejected: Tensor,
    beta: float,
) -> tuple[Tensor, Tensor]:
    """DPO on (B,) log-likelihood estimates -> (mean loss, margins (B,) in beta-scaled nats)."""
    margins = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return -F.logsigmoid(margins).mean(), margins


class VRPO(MaskedDiffusion):
    """DPO with ELBO-estimated likelihoods and LLaDA 1.5's variance reductions."""

    init_from_kinds: ClassVar[tuple[str, ...]] = ("diffusion",)
    needs_init_from: ClassVar[bool] = True

    def __init__(
        self,
        *,
        beta: float = 0.1,
        estimator: ELBOLogProbs | None = None,
        antithetic: bool = True,
        reference: nn.Module | None = None,
        **mdm_options: Any,
    ) -> None:
        super().__init__(**mdm_options)
        if beta <= 0:
            raise ValueError(f"objective.beta must be > 0, got {beta} (LLaDA 1.5 uses 0.1)")
        self.beta, self.antithetic = beta, antithetic
        self.estimator = estimator or ELBOLogProbs(n_times=8)
        self.reference = reference

    def options(self) -> dict[str, Any]:
        """Every option (the config group's keys); checkpoints keep only the MDM's (`recipe`)."""
        return {
            **super().options(), "beta": self.beta, "estimator": self.estimator,
            "antithetic": self.antithetic, "reference": self.reference,
        }  # fmt: skip

    def recipe(self) -> dict[str, Any]:
        """The trained network is an MDM: checkpoints say so."""
        return {"_target_": "llada.diffusion.mdm.MaskedDiffusion", **MaskedDiffusion.options(self)}

    def bind(self, backbone: nn.Module, tokenizer: Any) -> None:
        if self.reference is None:
            self.reference = frozen_copy(backbone)

    @staticmethod
    def answer(batch: Batch, which: str) -> tuple[Tensor, Tensor, Tensor]:
        """(ids (B, L), attention (B, L), completion (B, L) bool) of the chosen/rejected rows."""
        ids, attention = batch[f"{which}_input_ids"], batch[f"{which}_attention_mask"]
        completion = attention.bool() & ~batch[f"{which}_prompt_mask"].bool()
        return ids, attention, completion

    def bounds(self, backbone: LogitsFn, batch: Batch) -> dict[str, Tensor]:
        """B(y | x) (B,) of both answers under the policy and the reference."""
        if self.reference is None:
            raise RuntimeError("VRPO.bind(backbone, tokenizer) must run before training")
        self.reference.to(batch["chosen_input_ids"].device)
        out = {}
        for which in ANSWERS:
            ids, attention, completion = self.answer(batch, which)
            noise = self.estimator.draw(ids, completion, attention)
            reference_noise = (
                noise if self.antithetic else self.estimator.draw(ids, completion, attention)
            )
            out[f"policy_{which}"] = self.estimator.sequence(
                backbone, ids, completion, attention, noise, self.mask_id
            )
            with torch.no_grad():
                out[f"reference_{which}"] = self.estimator.sequence(
                    self.reference, ids, completion, attention, reference_noise, self.mask_id
                )
        return out

    def preference_loss(self, backbone: LogitsFn, batch: Batch) -> tuple[Tensor, Tensor]:
        """(loss, margins (B,)) of one estimate: what the variance benchmark repeats."""
        b = self.bounds(backbone, batch)
        return dpo_loss(
            b["policy_chosen"], b["reference_chosen"], b["policy_rejected"],
            b["reference_rejected"], self.beta,
        )  # fmt: skip

    def training_loss(self, backbone: LogitsFn, batch: Batch) -> TrainingLoss:
        loss, margins = self.preference_loss(backbone, batch)
        logs = {
            "train/preference_accuracy": (margins > 0).float().mean().detach(),
            "train/margin": margins.mean().detach(),
        }
        tokens = sum(self.answer(batch, which)[2].sum() for which in ANSWERS)
        return TrainingLoss(loss, tokens=tokens, logs=logs)

    def validation_nll(
        self, backbone: LogitsFn, batch: Batch, generator: torch.Generator
    ) -> RowNLL:
        """The MDM's conditional ELBO of the chosen answers (drift from the data it prefers)."""
        chosen = {
            "input_ids": batch["chosen_input_ids"],
            "attention_mask": batch["chosen_attention_mask"],
            "prompt_mask": batch["chosen_prompt_mask"],
        }
        return super().validation_nll(backbone, chosen, generator)
