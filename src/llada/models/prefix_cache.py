"""A logits function for block decoding that reuses the keys/values of positions before the block.

Fast-dLLM's approximate prefix cache: at a block's first step one full pass stores every layer's
prefix keys/values; the block's later steps run only the positions from the block on. The prefix
states would in truth shift a little as the block fills (attention is bidirectional), which is
the approximation; the cache is rebuilt at every block.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from llada.models.native import KVPrefix


class PrefixCachedLogits:
    """`logits = f(canvas, attention_mask)` with a `begin_block(start)` hook for the generator."""

    def __init__(self, backbone: nn.Module) -> None:
        if not getattr(backbone, "supports_kv_cache", False):
            raise ValueError(
                f"kv_cache needs the native backbone; {type(backbone).__name__} has no prefix "
                "cache (set sampler.kv_cache=false)"
            )
        self.backbone = backbone
        self.start = 0
        self.kv: KVPrefix | None = None

    def begin_block(self, start: int) -> None:
        """A new block: the next call refreshes the cache for the prefix [0, start)."""
        self.start, self.kv = start, None

    def __call__(self, canvas: Tensor, attention_mask: Tensor | None) -> Tensor:
        if self.kv is None or self.start == 0:
            self.kv = KVPrefix(self.start)
            logits = self.backbone(canvas, attention_mask, kv=self.kv)  # (B, L, V)
            self.kv.record = False
            return logits
        tail = self.backbone(canvas[:, self.start :], attention_mask, kv=self.kv)  # (B, L-s, V)
        head = tail.new_zeros(tail.shape[0], self.start, tail.shape[2])  # never committed
        return torch.cat([head, tail], dim=1)  # (B, L, V)
