"""The prefix and dual KV caches: exact when the canvas has not changed, a refresh every block."""

from __future__ import annotations

import pytest
import torch

from llada.diffusion.remasking import LowConfidenceRemasking
from llada.diffusion.sampling import generate
from llada.diffusion.token_choice import Greedy
from llada.models.hf import distilbert
from llada.models.native import NativeTransformer
from llada.models.prefix_cache import PrefixCachedLogits

MASK = 1


def model() -> NativeTransformer:
    torch.manual_seed(0)
    return NativeTransformer(vocab_size=30, dim=32, n_layers=2, n_heads=4, max_len=32).eval()


@torch.no_grad()
def test_replayed_suffix_equals_a_full_pass_on_the_same_canvas() -> None:
    net = model()
    canvas = torch.randint(2, 30, (2, 16))
    attention = torch.ones_like(canvas)
    attention[0, :3] = 0  # left padding in row 0
    cached = PrefixCachedLogits(net)
    cached.begin_block(10, 14)
    first = cached.block_logits(canvas, attention, 10, 14)  # the refresh pass is a full pass
    torch.testing.assert_close(first, net(canvas, attention)[:, 10:14])
    replay = cached.block_logits(canvas, attention, 10, 14)  # positions 10.., prefix cached
    torch.testing.assert_close(replay, net(canvas, attention)[:, 10:14])


@torch.no_grad()
def test_dual_cache_runs_only_the_block_and_is_exact_on_an_unchanged_canvas() -> None:
    net = model()
    canvas = torch.randint(2, 30, (2, 16))
    attention = torch.ones_like(canvas)
    attention[0, :3] = 0
    cached = PrefixCachedLogits(net, dual=True)
    for start, end in ((0, 4), (8, 12)):  # a first block too: its suffix is cached
        cached.begin_block(start, end)
        first = cached.block_logits(canvas, attention, start, end)
        torch.testing.assert_close(first, net(canvas, attention)[:, start:end])
        replay = cached.block_logits(canvas, attention, start, end)  # the block only
        assert replay.shape == (2, end - start, 30)
        torch.testing.assert_close(replay, net(canvas, attention)[:, start:end])
    # A changed block moves the block's logits; the cached suffix keeps its old states.
    changed = canvas.clone()
    changed[:, 9] = 5
    replay = cached.block_logits(changed, attention, 8, 12)
    assert not torch.allclose(replay, first)


@torch.no_grad()
def test_block_decoding_with_cache_fills_everything_with_the_same_nfe() -> None:
    net = model()
    canvas = torch.cat([torch.randint(2, 30, (2, 8)), torch.full((2, 16), MASK)], dim=1)
    common = {
        "steps": 16, "chooser": Greedy(), "remasking": LowConfidenceRemasking(),
        "block_length": 4, "gen_start": 8,
    }  # fmt: skip
    plain = generate(net, canvas, MASK, **common)
    for dual in (False, True):
        cached = generate(PrefixCachedLogits(net, dual=dual), canvas, MASK, **common)
        assert not bool((cached.tokens == MASK).any())
        assert cached.nfe == plain.nfe == 16
        assert torch.equal(cached.tokens[:, :8], canvas[:, :8])  # the prompt untouched
        # First step of every block is exact, so each block's first commit agrees with no cache.
        agreement = (cached.tokens[:, 8:] == plain.tokens[:, 8:]).float().mean().item()
        assert agreement >= 0.25


def test_non_native_backbone_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="kv_cache=false"):
        PrefixCachedLogits(distilbert(vocab_size=30, dim=32, n_layers=1, n_heads=2, hidden_dim=64))
