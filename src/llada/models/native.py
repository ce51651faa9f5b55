"""Native bidirectional transformer in the LLaDA architecture.

No causal mask and no time input (the mask predictor sees only the canvas), RMSNorm, rotary position
embeddings, SwiGLU MLP, `scaled_dot_product_attention`. `causal=True` turns the same network into the
autoregressive baseline.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# ------------------------------------------------------------------------------ token shift
# Models adapted from autoregressive ones (DiffuLLaMA, Dream, dllm A2D): an AR network's output at
# i-1 predicts token i, and keeping that means reading each position's prediction from the output
# at the position before it, among the queries it may attend to (ALGORITHMS.md section 8). In a
# plain sequence that is column i-1 (a row's first real token keeps its own); in block diffusion's
# [x_t ; x_0] the first token of a noisy block reads the clean token before it, the others the noisy
# one, which the pattern selects. Here, not in a module of its own, so exports stay self-contained.
def shift_sources(
    visible: Tensor, pattern: Tensor | None = None, positions: Tensor | None = None
) -> Tensor:
    """Index (B, L) long of the query whose output predicts each position.

    visible (B, L) bool; with `positions` (L,) the source is the visible query at position - 1
    allowed by `pattern` ((L, L) or (B, L, L) bool); none (a row's first token): itself.
    """
    batch, length = visible.shape
    index = torch.arange(length, device=visible.device)  # (L,)
    if positions is None:
        previous = (index - 1).clamp_min(0).expand(batch, -1)  # (B, L)
        first = visible & (visible.long().cumsum(dim=1) == 1)  # each row's first real token
        no_source = first | ~visible.gather(1, previous)
        return torch.where(no_source, index.expand(batch, -1), previous)
    before = positions[None, :] == positions[:, None] - 1  # (L, L): key at the position before
    allowed = before if pattern is None else before & pattern.bool()  # (L, L) | (B, L, L)
    allowed = allowed.expand(batch, length, length) & visible[:, None, :]  # (B, L, L)
    source = allowed.float().argmax(dim=-1)  # (B, L): the unique allowed one, if any
    return torch.where(allowed.any(dim=-1), source, index.expand(batch, -1))


def shifted(
    values: Tensor, visible: Tensor, pattern: Tensor | None = None, positions: Tensor | None = None
) -> Tensor:
    """values (B, L, D) (hidden states or logits) read at each position's source."""
    sources = shift_sources(visible, pattern, positions)  # (B, L)
    return values.gather(1, sources[..., None].expand(-1, -1, values.shape[-1]))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding tables (cos, sin) for positions [0, max_len)."""

    def __init__(self, head_dim: int, max_len: int, theta: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (T, D/2)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def tables(self, positions: int | Tensor, length: int) -> tuple[Tensor, Tensor]:
        """(cos, sin) (L, D/2) for positions offset.. offset+L (an int) or given ones (L,) long.

        Positions past the table (block diffusion's sliding window) are computed on the fly:
        attention depends only on position differences, which stay inside the context.
        """
        if isinstance(positions, int):
            if positions + length <= self.cos.shape[0]:
                return self.cos[positions : positions + length], self.sin[
                    positions : positions + length
                ]
            positions = torch.arange(positions, positions + length, device=self.cos.device)
        # Given positions: the same float32 products the table holds, with no host sync to
        # check the table's range (this runs in every layer).
        angles = positions.float()[:, None] * self.inv_freq  # (L, D/2)
        return angles.cos(), angles.sin()

    def forward(self, x: Tensor, positions: int | Tensor = 0) -> Tensor:
        """x (B, H, L, D) at positions offset.. offset+L (or the given (L,)) -> x rotated."""
        cos, sin = self.tables(positions, x.shape[-2])
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # (L, D/2)
        if x.dtype in (torch.float32, torch.float64) and not (
            torch.is_grad_enabled() and x.requires_grad
        ):
            # Inference: one complex multiply per pair, (x1 + i x2)(cos + i sin), reading x once
            # (14x faster than the stacked form on CPU); equal to it within 1e-6 (FMA rounding).
            pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)))  # (B, H, L, D/2) complex
            turns = torch.complex(cos, sin).to(pairs.dtype)  # (L, D/2)
            return torch.view_as_real(pairs * turns).flatten(-2)  # (B, H, L, D)
        x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, H, L, D/2)
        rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return rotated.flatten(-2)  # (B, H, L, D)


class Attention(nn.Module):
    def __init__(self, dim: int, n_heads: int, rope: RotaryEmbedding, causal: bool) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"model.dim={dim} must be divisible by model.n_heads={n_heads}")
        self.n_heads, self.causal, self.rope = n_heads, causal, rope
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(
        self,
        x: Tensor,
        attn_bias: Tensor | None,
        positions: int | Tensor = 0,
        kv: KVCache | None = None,
        rows: slice | None = None,
    ) -> Tensor:
        """x (B, L, dim) at `positions` (the first one, or all (L,)) -> (B, L, dim).

        With `kv`, keys/values of earlier positions come from the cache, and the computed ones
        are stored when the cache records them. `rows`: only those queries (bidirectional
        attention; every key still counts) -> (B, n, dim).
        """
        batch, length, dim = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.n_heads, dim // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, L, D)
        q, k = self.rope(q, positions), self.rope(k, positions)
        if kv is not None:
            k, v = kv.extend(self, k, v)  # (B, H, prefix + L, D)
        if rows is not None:
            q = q[:, :, rows]  # (B, H, n, D)
            if attn_bias is not None and attn_bias.shape[-2] > 1:
                attn_bias = attn_bias[..., rows, :]  # a pattern's rows of those queries
        # A bias from the caller already holds causality (it also hides padded keys).
        is_causal = self.causal and attn_bias is None
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, is_causal=is_causal)
        return self.out(y.transpose(1, 2).reshape(batch, q.shape[2], dim))  # (B, L|n, dim)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class KVCache:
    """Per-layer keys/values that a forward pass reads before (and may add to) its own."""

    @property
    def first_position(self) -> int:
        """Position of the pass's first input (its keys follow the cached ones)."""
        raise NotImplementedError

    @property
    def cached_length(self) -> int:
        """Keys the pass reads from the cache before its own."""
        raise NotImplementedError

    def extend(self, layer: nn.Module, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """This pass's k, v (B, H, L, D) -> the keys/values it attends to (B, H, cached + L, D)."""
        raise NotImplementedError


class BlockKVCache(KVCache):
    """Exact cache of committed blocks (block diffusion): their keys/values never change.

    A pass reads every cached key; when `record` is n > 0 it also appends the keys/values of its
    first n positions (the decoder fuses "encode the finished blocks" into the next block's first
    step). `start` is the position of the first cached key; `trim` drops the oldest keys (a
    sliding window past the context).
    """

    def __init__(self) -> None:
        self.store: dict[int, tuple[Tensor, Tensor]] = {}
        self.start, self.length, self.record = 0, 0, 0

    @property
    def first_position(self) -> int:
        return self.start + self.length

    @property
    def cached_length(self) -> int:
        return self.length

    def extend(self, layer: nn.Module, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        cached = self.store.get(id(layer))
        if cached is not None:
            k, v = torch.cat([cached[0], k], dim=2), torch.cat([cached[1], v], dim=2)
        if self.record:
            keep = self.length + self.record
            self.store[id(layer)] = (k[:, :, :keep], v[:, :, :keep])
        return k, v

    def recorded(self) -> None:
        """A recording pass has finished: its first `record` positions are now cached."""
        self.length += self.record
        self.record = 0

    def drop_before(self, position: int) -> None:
        """Forget the keys of positions before `position` (uncached ones there are skipped)."""
        drop = min(max(position - self.start, 0), self.length)
        if drop:
            self.store = {
                key: (k[:, :, drop:], v[:, :, drop:]) for key, (k, v) in self.store.items()
            }
        self.length -= drop
        self.start = max(self.start + drop, position) if self.length == 0 else self.start + drop


class KVPrefix(KVCache):
    """Keys/values around the current block, per attention layer (Fast-dLLM's caches).

    `record=True`: a full pass stores each layer's keys/values. `record=False`: a pass over the
    block reuses those of the positions before `offset` (prefix cache) and, with `end`, also of
    those from `end` on (DualCache: the still-masked suffix). Approximate within a block (the
    cached states would change with the block's new tokens), exact at the block's first step.
    """

    def __init__(self, offset: int, end: int | None = None) -> None:
        self.offset, self.end, self.record = offset, end, True
        self.store: dict[int, tuple[Tensor, Tensor]] = {}
        self.length = 0  # positions of the recorded pass

    @property
    def first_position(self) -> int:
        return 0 if self.record else self.offset  # recording passes the whole canvas

    @property
    def cached_length(self) -> int:
        if self.record:
            return 0
        return self.offset + (0 if self.end is None else self.length - self.end)

    def extend(self, layer: nn.Module, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.record:
            self.length = k.shape[2]
            keep = k.shape[2] if self.end is not None else self.offset
            self.store[id(layer)] = (k[:, :, :keep], v[:, :, :keep])
            return k, v
        cached_k, cached_v = self.store[id(layer)]
        before_k, before_v = cached_k[:, :, : self.offset], cached_v[:, :, : self.offset]
        if self.end is None:
            return torch.cat([before_k, k], dim=2), torch.cat([before_v, v], dim=2)
        after_k, after_v = cached_k[:, :, self.end :], cached_v[:, :, self.end :]
        return torch.cat([before_k, k, after_k], dim=2), torch.cat([before_v, v, after_v], dim=2)


class Block(nn.Module):
    def __init__(self, dim: int, n_heads: int, hidden: int, rope: RotaryEmbedding, causal: bool):
        super().__init__()
        self.attn_norm, self.mlp_norm = RMSNorm(dim), RMSNorm(dim)
        self.attn = Attention(dim, n_heads, rope, causal)
        self.mlp = SwiGLU(dim, hidden)

    def forward(
        self,
        x: Tensor,
        attn_bias: Tensor | None,
        positions: int | Tensor = 0,
        kv: KVCache | None = None,
        rows: slice | None = None,
    ) -> Tensor:
        """x (B, L, dim) -> (B, L, dim), or (B, n, dim) for `rows` only (all keys still seen)."""
        attended = self.attn(self.attn_norm(x), attn_bias, positions, kv, rows)
        x = (x if rows is None else x[:, rows]) + attended
        return x + self.mlp(self.mlp_norm(x))


class NativeTransformer(nn.Module):
    """input_ids (B, L) [+ attention_mask (B, L)] -> logits (B, L, V).

    `output_mask` (B, L) bool restricts the output projection to the positions that are scored
    (the masked ones in training): at vocab 4096 the projection is a large share of the FLOPs.
    """

    supports_output_mask = True
    supports_output_columns = True  # forward(..., output_columns=(start, end)): a block's logits
    supports_kv_cache = True  # forward(..., kv=KVPrefix): `PrefixCachedLogits`
    # forward(..., attention=(Lq, Lk) bool, positions=(L,)): block diffusion's patterns
    supports_attention_pattern = True

    def new_block_cache(self) -> BlockKVCache:
        """An empty exact cache for block diffusion's decoder (forward(..., kv=cache))."""
        return BlockKVCache()

    def __init__(
        self,
        vocab_size: int,
        dim: int = 256,
        n_layers: int = 4,
        n_heads: int = 4,
        mlp_hidden: int | None = None,
        max_len: int = 1024,
        tie_embeddings: bool = True,
        causal: bool = False,
        rope_theta: float = 10000.0,
        init_std: float = 0.02,
        token_shift: bool = False,
        init_from: str | None = None,
    ) -> None:
        """`token_shift`: read each position's prediction from the output before it (a model
        started from an autoregressive checkpoint). `init_from`: the path of one of our AR
        checkpoints to start from; the train entry loads its weights (`llada.init_from`: the
        network knows no checkpoints). Not part of the recipe: a checkpoint rebuilds without it."""
        super().__init__()
        mlp_hidden = mlp_hidden or 256 * ((8 * dim // 3 + 255) // 256)
        self.hparams: dict[str, Any] = {
            "vocab_size": vocab_size, "dim": dim, "n_layers": n_layers, "n_heads": n_heads,
            "mlp_hidden": mlp_hidden, "max_len": max_len, "tie_embeddings": tie_embeddings,
            "causal": causal, "rope_theta": rope_theta, "init_std": init_std,
            "token_shift": token_shift,
        }  # fmt: skip
        self.max_len, self.causal, self.token_shift = max_len, causal, token_shift
        rope = RotaryEmbedding(dim // n_heads, max_len, rope_theta)
        self.embed = nn.Embedding(vocab_size, dim)
        self.blocks = nn.ModuleList(
            Block(dim, n_heads, mlp_hidden, rope, causal) for _ in range(n_layers)
        )
        self.norm = RMSNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        self._init_weights(init_std, n_layers)
        if tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.init_from = init_from

    def _init_weights(self, std: float, n_layers: int) -> None:
        """Normal(0, std) everywhere; residual output projections scaled by 1/sqrt(2 * layers)."""
        for name, param in self.named_parameters():
            if param.dim() < 2:
                continue
            scale = (2 * n_layers) ** -0.5 if name.endswith(("out.weight", "down.weight")) else 1.0
            nn.init.normal_(param, mean=0.0, std=std * scale)

    def recipe(self) -> dict[str, Any]:
        """An instantiable config that rebuilds this network (weights come from the checkpoint)."""
        return {"_target_": f"{type(self).__module__}.{type(self).__qualname__}", **self.hparams}

    def _pattern_bias(self, pattern: Tensor, visible: Tensor | None) -> Tensor:
        """pattern (Lq, Lk) or (B, Lq, Lk) bool [& visible keys (B, Lk)] -> (B|1, 1, Lq, Lk).

        The queries are the last Lq keys; each always sees itself, so a padded query has no
        empty softmax row (its output is unused).
        """
        queries, keys = pattern.shape[-2:]
        bias = pattern if pattern.dim() == 3 else pattern[None]  # (B|1, Lq, Lk)
        if visible is not None:
            bias = bias & visible[:, None, :]
        rows = torch.arange(queries, device=bias.device)[:, None] + (keys - queries)  # (Lq, 1)
        itself = rows == torch.arange(keys, device=bias.device)  # (Lq, Lk)
        return (bias | itself)[:, None]

    def _attention_bias(self, visible: Tensor) -> Tensor:
        """visible (B, L) bool -> (B, 1, 1|L, L) bool: which keys each query may attend to.

        Padded keys are hidden from every query. A causal model also hides later keys; a padded
        query then still sees itself, so no row of the softmax is empty (its output is unused).
        """
        keys = visible[:, None, None, :]  # (B, 1, 1, L)
        if not self.causal:
            return keys
        length = visible.shape[1]
        past = torch.ones(length, length, dtype=torch.bool, device=visible.device).tril()  # (L, L)
        itself = torch.eye(length, dtype=torch.bool, device=visible.device)  # (L, L)
        return past & (keys | itself)  # (B, 1, L, L)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        output_mask: Tensor | None = None,
        kv: KVCache | None = None,
        attention: Tensor | None = None,
        positions: Tensor | None = None,
        output_columns: tuple[int, int] | None = None,
    ) -> Tensor:
        """Logits (B, L, V), or (N, V) for the N positions of `output_mask` in row-major order,
        or (B, end - start, V) for `output_columns` (start, end) of the inputs.

        - `output_columns` (a decoder's block): the last layer computes only those queries (the
          keys/values of every position still count) and the head runs there only: the same
          values as slicing the full output, at less cost. Bidirectional models only.

        - `kv`: keys/values of earlier positions come from a cache (`KVPrefix`, `BlockKVCache`);
          `input_ids` are the positions after them and `attention_mask` (B, cached + L) covers
          the cached keys too.
        - `attention` (L, cached + L) or (B, L, cached + L) bool: which keys each query sees (a
          bidirectional model only; block diffusion), with `positions` (L,) long the inputs'
          positions (default: consecutive). Padded keys are hidden on top of the pattern.
        """
        length = input_ids.shape[1]
        first = kv.first_position if kv is not None else 0
        span = (
            (kv.cached_length if kv is not None else 0) + length
            if positions is None
            else int(positions.max() - positions.min()) + 1
        )
        if span > self.max_len:
            raise ValueError(
                f"sequence length {span} exceeds the model context model.max_len={self.max_len}"
            )
        if (kv is not None or attention is not None or output_columns is not None) and self.causal:
            raise ValueError(
                "KV caches, attention patterns and output columns are for bidirectional models "
                "(model.causal=false)"
            )
        visible = None
        if attention_mask is not None and not bool(attention_mask.all()):
            visible = attention_mask.bool()
        if attention is not None:
            attn_bias = self._pattern_bias(attention, visible)
        else:
            attn_bias = None if visible is None else self._attention_bias(visible)
        where: int | Tensor = first if positions is None else positions
        # Only the asked columns leave the last layer, unless the token shift reads neighbours.
        rows = None if output_columns is None or self.token_shift else slice(*output_columns)
        x = self.embed(input_ids)  # (B, L, dim)
        for index, block in enumerate(self.blocks):
            x = block(x, attn_bias, where, kv, rows if index == len(self.blocks) - 1 else None)
        if self.token_shift:  # per position, so the shift can come before the head
            if kv is not None:
                raise ValueError(
                    "KV caches read outputs that token shift would take from cached positions; "
                    "decode without the cache (sampler.kv_cache=false) for model.token_shift=true"
                )
            keys = torch.ones_like(input_ids, dtype=torch.bool) if visible is None else visible
            x = shifted(x, keys, attention, positions)
            if output_columns is not None:
                x = x[:, slice(*output_columns)]  # (B, n, dim)
        if output_mask is not None:
            x = x[output_mask]  # (N, dim)
        return self.lm_head(self.norm(x))  # (B, L, V) or (N, V)


def fsdp_block_classes() -> set[type[nn.Module]]:
    """Module types FSDP wraps one by one (its auto-wrap policy): one transformer block each."""
    return {Block}
