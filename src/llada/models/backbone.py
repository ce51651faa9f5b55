"""The interface every backbone offers the LightningModule and the objectives.

Written down once so that the module reads capabilities instead of probing for attributes, and a
user's own network knows what to provide. Any `nn.Module` with these members works as `model=`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

MEMBERS = ("causal", "max_len", "supports_output_mask", "supports_kv_cache", "recipe")


@runtime_checkable
class Backbone(Protocol):
    """`logits = backbone(input_ids (B, L), attention_mask (B, L) | None) -> (B, L, V)`."""

    causal: bool  # attention: True = causal (objective=ar), False = bidirectional
    max_len: int | None  # context length in tokens (None: no limit known)
    # forward(..., output_mask=(B, L) bool) returns logits (N, V) at those positions only
    supports_output_mask: bool
    # runs under `PrefixCachedLogits` (forward(..., kv=KVPrefix)): the native transformer
    supports_kv_cache: bool
    # Optional (absent = False): forward(..., attention=(Lq, Lk) bool, positions=(L,)) takes an
    # attention pattern per call (objective=bd3, causal_anneal_steps); `token_shift`: position
    # i's prediction is read from the output at i-1 (models adapted from AR ones).

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor: ...

    def recipe(self) -> dict[str, Any]:
        """A `_target_` recipe that rebuilds the network (without weights) from a checkpoint."""
        ...


def require_backbone(backbone: Any) -> None:
    """A one-line error naming the members a backbone lacks."""
    missing = [name for name in MEMBERS if not hasattr(backbone, name)]
    if missing:
        raise TypeError(
            f"{type(backbone).__name__} is not a llada backbone: it lacks {', '.join(missing)} "
            "(see llada.models.backbone.Backbone)"
        )
