"""What every training objective provides: the interface the one LightningModule drives.

An objective is the maths of one kind of model (LLaDA's masked diffusion, next-token prediction,
block diffusion, ...): its training loss, its validation bound or exact likelihood, the likelihood
of an answer given a prompt, the attention pattern it needs from the backbone and the decoder that
generates from it. It knows no Lightning and no config: the module calls it with a backbone (any
callable `logits = f(input_ids, attention_mask)`) and batches of tensors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from llada.diffusion.sampling import GenerationResult, LogitsFn
from llada.diffusion.schedules import LinearSchedule, MaskingSchedule

Attention = Literal["bidirectional", "causal", "block_causal"]
Batch = dict[str, Tensor]  # input_ids (B, L), attention_mask (B, L), prompt_mask (B, L) for SFT


@dataclass
class TrainingLoss:
    """A training step's loss and what the module logs beside it."""

    loss: Tensor  # scalar: what the optimizer minimises
    row_loss: Tensor | None = None  # (B,) per-token loss of each row, for the loss-by-t log
    t: Tensor | None = None  # (B,) the rows' noise levels (None: nothing to bucket)
    tokens: Tensor | None = None  # scalar: tokens scored (counted into tokens_seen)
    logs: dict[str, Tensor] = field(default_factory=dict)  # more train/* scalars to log


@dataclass
class RowNLL:
    """One estimate of each validation row's negative log-likelihood (or its bound)."""

    nll: Tensor  # (B,) nats summed over the row's scored tokens
    slots: Tensor  # (B,) float: the row's scored tokens


def logits_at(backbone: LogitsFn, ids: Tensor, attention_mask: Tensor | None, at: Tensor) -> Tensor:
    """Logits (N, V) at the N positions where `at` (B, L) is True, in row-major order.

    A backbone with `supports_output_mask` runs its head on those positions only (most of the
    cost at small t); any other callable gives full logits that are then indexed.
    """
    if getattr(backbone, "supports_output_mask", False):
        return backbone(ids, attention_mask, output_mask=at)  # (N, V)
    return backbone(ids, attention_mask)[at]  # (N, V)


class Patterned:
    """A backbone call with a fixed attention pattern (and positions): for `logits_at`."""

    def __init__(self, backbone: LogitsFn, pattern: Tensor, positions: Tensor | None = None):
        self.backbone, self.pattern, self.positions = backbone, pattern, positions
        self.supports_output_mask = getattr(backbone, "supports_output_mask", False)

    def __call__(self, ids: Tensor, attention_mask: Tensor | None, **options: Any) -> Tensor:
        if self.positions is not None:
            options["positions"] = self.positions
        return self.backbone(ids, attention_mask, attention=self.pattern, **options)


def anneal_causal(target: Tensor, step: int, steps: int, positions: Tensor | None = None) -> Tensor:
    """DiffuLLaMA's attention-mask annealing: start causal, open up to `target` over `steps`.

    target (L, L) bool; `positions` (L,) of the queries/keys (default 0..L-1; block diffusion's
    [x_t ; x_0] repeats them). Each allowed entry to a later position opens with probability
    step / steps (torch's global RNG, so a resumed run draws the same); entries to the same or
    an earlier position stay as the target has them.
    """
    if positions is None:
        positions = torch.arange(target.shape[-1], device=target.device)
    causal = positions[None, :] <= positions[:, None]  # (L, L)
    opened = torch.rand(target.shape, device=target.device) < step / steps
    return target & (causal | opened)


def annealable(backbone: Any, steps: int) -> None:
    """objective.causal_anneal_steps needs a backbone that takes attention patterns."""
    if steps > 0 and not getattr(backbone, "supports_attention_pattern", False):
        raise ValueError(
            f"objective.causal_anneal_steps={steps} needs a backbone that takes attention "
            f"patterns (model=tiny/small, model=hf_causal); {type(backbone).__name__} does not"
        )


class Objective(ABC):
    """Base of the objectives: token ids, the masking schedule, the recipe for checkpoints."""

    lm_kind: ClassVar[str]  # "diffusion" | "autoregressive": the label in results and checkpoints
    attention: ClassVar[Attention]  # the attention pattern the backbone must have
    exact: ClassVar[bool]  # validation is exact (one pass) rather than a Monte-Carlo bound
    # The decoder takes several passes over one block, so a prefix KV cache can serve it.
    prefix_cache: ClassVar[bool] = True
    # Decoding may run past the context (a sliding window): only the prompt must fit.
    sliding_window: ClassVar[bool] = False

    def __init__(
        self, *, mask_id: int, eos_id: int | None = None, schedule: MaskingSchedule | None = None
    ) -> None:
        self.mask_id, self.eos_id = int(mask_id), eos_id
        # The masking schedule is the forward process; decoders use it too (schedule_steps).
        self.schedule = schedule or LinearSchedule()

    def options(self) -> dict[str, Any]:
        """The constructor options that a checkpoint stores (ids and schedule are supplied)."""
        return {}

    def recipe(self) -> dict[str, Any]:
        """A `_target_` recipe: `instantiate(recipe, mask_id=..., eos_id=..., schedule=...)`."""
        cls = type(self)
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **self.options()}

    def at_step(self, step: int) -> None:
        """The optimizer step about to be taken (for options that change over training)."""
        self.step = step

    step = 0

    def state(self) -> dict[str, Any]:
        """What training changes besides the weights (checkpointed, restored on resume)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore `state()` from a checkpoint."""
        return None

    # What `model.init_from` takes for this objective (checkpoint kinds, the `lm_kind`s): an AR
    # checkpoint to adapt or continue, a diffusion one to fine-tune or post-train; post-training
    # objectives need one (`needs_init_from`).
    init_from_kinds: ClassVar[tuple[str, ...]] = ("autoregressive",)
    needs_init_from: ClassVar[bool] = False

    def bind(self, backbone: Any, tokenizer: Any) -> None:
        """Called once the model is built (post-training needs its tokenizer and a reference)."""
        return None

    def validation_summary(self, apply: bool = True) -> dict[str, float]:
        """Scalars to log after a validation epoch besides the bound; resets what led to them.
        `apply=False` (Lightning's sanity check): measure, but change nothing for training."""
        return {}

    def check_backbone(self, backbone: Any) -> None:
        """A backbone whose attention does not match the objective is a one-line error."""
        causal = bool(getattr(backbone, "causal", False))
        if causal != (self.attention == "causal"):
            have = "causal" if causal else "bidirectional"
            raise ValueError(
                f"objective {type(self).__name__} needs a {self.attention} backbone but "
                f"{type(backbone).__name__} is {have}; pair objective=ar with model=ar_tiny/"
                "ar_small (model.causal=true) and objective=mdm with a bidirectional model"
            )

    @property
    def prefix_ids(self) -> tuple[int, ...]:
        """Ids put before every prompt or template (the AR baseline's start token)."""
        return ()

    def scored_length(self, context: int | None) -> int | None:
        """The longest context + answer one score can take (the backbone sees all of it here)."""
        return context

    def perplexity_label(self) -> str:
        """What the validation perplexity is: exact, an ELBO, or neither."""
        if self.exact:
            return "perplexity (exact)"
        return "ELBO perplexity" if self.schedule.is_elbo else "masked-token perplexity (no ELBO)"

    def check_generation(self, cfg_scale: float) -> None:
        """Refuse generation settings the decoder cannot honour (every one is fine here)."""
        return None

    @abstractmethod
    def training_loss(self, backbone: LogitsFn, batch: Batch) -> TrainingLoss: ...

    @abstractmethod
    def validation_nll(
        self, backbone: LogitsFn, batch: Batch, generator: torch.Generator
    ) -> RowNLL: ...

    @abstractmethod
    def log_likelihood(
        self,
        backbone: LogitsFn,
        pairs: list[tuple[Tensor, Tensor]],
        *,
        mc_samples: int,
        batch_size: int,
        seed: int,
    ) -> tuple[Tensor, Tensor]:
        """log p(answer | prompt) (or its bound) per (prompt_ids (P,), answer_ids (T,)) pair.

        Returns (values (N,), standard errors (N,)). A pair's value does not depend on the other
        pairs (Monte-Carlo estimates draw from `seed` afresh for each pair).
        """

    @abstractmethod
    def decode(self, logits_fn: LogitsFn, canvas: Tensor, **options: Any) -> GenerationResult:
        """Fill the masks of `canvas` (B, L); options as `diffusion.sampling.generate` takes."""

    @abstractmethod
    def score(
        self,
        backbone: LogitsFn,
        context: Tensor,
        answer: Tensor,
        *,
        mc_samples: int,
        batch_size: int,
        generator: torch.Generator | None,
        greedy_check: str,
    ) -> tuple[float, bool]:
        """(log p(answer | context) or its bound, whether greedy decoding gives the answer).

        context (P,), answer (T,); lm-eval's `loglikelihood` request. `greedy_check` is one of
        GREEDY_CHECKS ("none" answers False without a forward pass).
        """


GREEDY_CHECKS = ("one_pass", "decode", "none")
