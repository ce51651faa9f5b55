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
    """The decoders' `block_logits(canvas, attention_mask, start, end)` with a `begin_block` hook.

    Only the block's logits come back (the head runs on its columns alone): outside the block
    nothing is ever committed.
    """

    def __init__(self, backbone: nn.Module, dual: bool = False) -> None:
        if not getattr(backbone, "supports_kv_cache", False):
            raise ValueError(
                f"kv_cache needs the native backbone; {type(backbone).__name__} has no prefix "
                "cache (set sampler.kv_cache=false)"
            )
        self.backbone, self.dual = backbone, dual
        self.kv: KVPrefix | None = None

    def begin_block(self, start: int, end: int) -> None:
        """A new block [start, end): the next call refreshes the cache."""
        self.kv = None

    def block_logits(
        self, canvas: Tensor, attention_mask: Tensor | None, start: int, end: int
    ) -> Tensor:
        """Logits (B, end - start, V) of canvas[:, start:end]; canvas (B, L) is the whole one."""
        width = canvas.shape[1]
        stop = end if self.dual else width  # the columns a cached pass runs: [start, stop)
        if self.kv is None or (start == 0 and stop == width):  # refresh: one full pass
            self.kv = KVPrefix(start, end if self.dual else None)
            logits = self.backbone(canvas, attention_mask, kv=self.kv, output_columns=(start, end))
            self.kv.record = False
            return logits  # (B, n, V)
        return self.backbone(
            canvas[:, start:stop], attention_mask, kv=self.kv, output_columns=(0, end - start)
        )  # (B, n, V)
