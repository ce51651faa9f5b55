"""A logits function for block decoding that reuses the keys/values of positions outside the block.

Fast-dLLM's approximate caches: at a block's first step one full pass stores every layer's
keys/values; the block's later steps run only the positions from the block on (prefix cache), or
only the block itself (`dual`: DualCache, the still-masked suffix cached too). The cached states
would in truth shift a little as the block fills (attention is bidirectional), which is the
approximation (measured: scripts/bench_cache_error.py); the cache is rebuilt at every block.
"""

from __future__ import annotations

from torch import Tensor, nn

from llada.models.native import KVPrefix


class PrefixCachedLogits:
    """`logits = f(canvas, attention_mask)` with a `begin_block(start)` hook for the generator."""

    def __init__(self, backbone: nn.Module, dual: bool = False) -> None:
        if not getattr(backbone, "supports_kv_cache", False):
            raise ValueError(
                f"kv_cache needs the native backbone; {type(backbone).__name__} has no prefix "
                "cache (set sampler.kv_cache=false)"
            )
        self.backbone, self.dual = backbone, dual
        self.start, self.end = 0, None
        self.kv: KVPrefix | None = None

    def begin_block(self, start: int, end: int) -> None:
        """A new block [start, end): the next call refreshes the cache."""
        self.start, self.end, self.kv = start, end, None

    def __call__(self, canvas: Tensor, attention_mask: Tensor | None) -> Tensor:
        end = self.end if self.dual and self.end is not None else canvas.shape[1]
        if self.kv is None or (self.start == 0 and end == canvas.shape[1]):
            self.kv = KVPrefix(self.start, end if self.dual else None)
            logits = self.backbone(canvas, attention_mask, kv=self.kv)  # (B, L, V)
            self.kv.record = False
            return logits
        block = self.backbone(canvas[:, self.start : end], attention_mask, kv=self.kv)
        full = block.new_zeros(canvas.shape[0], canvas.shape[1], block.shape[2])  # (B, L, V)
        full[:, self.start : end] = block  # outside the block nothing is ever committed
        return full
