"""Backbones: shapes, bidirectionality, padding, rebuild from recipe, HF local round trip."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from llada.models.hf import HFMaskedLM, distilbert, masked_lm
from llada.models.native import NativeTransformer


def _tiny(**kwargs) -> NativeTransformer:
    torch.manual_seed(0)
    return NativeTransformer(vocab_size=50, dim=32, n_layers=2, n_heads=4, max_len=16, **kwargs)


def test_native_shapes_and_bidirectional_attention() -> None:
    model = _tiny().eval()
    ids = torch.randint(0, 50, (2, 12))
    logits = model(ids)
    assert logits.shape == (2, 12, 50)
    changed = ids.clone()
    changed[:, -1] = (ids[:, -1] + 1) % 50
    # No causal mask: changing the last token changes the first position's prediction.
    assert not torch.allclose(model(changed)[:, 0], logits[:, 0])


def test_causal_variant_ignores_the_future() -> None:
    model = _tiny(causal=True).eval()
    ids = torch.randint(0, 50, (2, 12))
    changed = ids.clone()
    changed[:, -1] = (ids[:, -1] + 1) % 50
    torch.testing.assert_close(model(changed)[:, :-1], model(ids)[:, :-1])


def test_padding_is_invisible() -> None:
    model = _tiny().eval()
    ids = torch.randint(0, 50, (1, 10))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 10)], dim=1).long()
    # Left padding shifts rotary positions, so compare against the same padded layout with other
    # pad ids: the real tokens' logits must not depend on what the padding holds.
    other = padded.clone()
    other[:, :3] = 7
    torch.testing.assert_close(model(padded, mask)[:, 3:], model(other, mask)[:, 3:])


def test_context_limit_error_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"model\.max_len=16"):
        _tiny()(torch.zeros(1, 17, dtype=torch.long))


def test_native_recipe_rebuilds_same_network() -> None:
    model = _tiny()
    rebuilt = hydra.utils.instantiate(model.recipe())
    rebuilt.load_state_dict(model.state_dict())
    ids = torch.randint(0, 50, (2, 8))
    torch.testing.assert_close(rebuilt(ids), model(ids))
    assert model.lm_head.weight is model.embed.weight  # tied by default


def test_distilbert_random_init_and_recipe() -> None:
    model = distilbert(vocab_size=60, dim=32, n_layers=1, n_heads=2, hidden_dim=64).eval()
    ids = torch.randint(0, 60, (2, 9))
    assert model(ids).shape == (2, 9, 60)
    rebuilt = hydra.utils.instantiate(model.recipe())
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt.eval()(ids), model(ids))


def _saved_tiny_bert(directory: Path) -> str:
    """A random 1-layer BERT masked LM (vocabulary 40) written with save_pretrained."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32,
    )  # fmt: skip
    BertForMaskedLM(config).save_pretrained(directory)
    return str(directory)


def test_hf_masked_lm_from_local_directory(tmp_path) -> None:
    _saved_tiny_bert(tmp_path / "bert")
    loaded = masked_lm(vocab_size=40, name_or_path=str(tmp_path / "bert"))
    assert isinstance(loaded, HFMaskedLM)
    assert loaded(torch.randint(0, 40, (1, 5))).shape == (1, 5, 40)
    fresh = masked_lm(vocab_size=77, name_or_path=str(tmp_path / "bert"), pretrained=False)
    assert fresh(torch.randint(0, 77, (1, 5))).shape == (1, 5, 77)


def test_unknown_hub_name_fails_fast_offline() -> None:
    with pytest.raises(OSError, match="hub is unreachable"):
        distilbert(vocab_size=10, pretrained="no-such-org/no-such-model")


def test_output_mask_selects_the_same_logits() -> None:
    model = _tiny().eval()
    ids = torch.randint(0, 50, (2, 12))
    output_mask = torch.rand(2, 12) < 0.4
    torch.testing.assert_close(model(ids, output_mask=output_mask), model(ids)[output_mask])


def test_hf_backbone_grows_embeddings_for_added_tokens(tmp_path) -> None:
    _saved_tiny_bert(tmp_path / "bert")
    model = masked_lm(vocab_size=40, name_or_path=str(tmp_path / "bert"))
    model.fit_vocab(41)  # the tokenizer gained a [MASK]
    assert model(torch.tensor([[40, 1, 2]])).shape == (1, 3, 41)


def test_hf_masked_lm_loads_in_the_asked_dtype(tmp_path) -> None:
    """`model.dtype=bfloat16`: large checkpoints load in half the memory."""
    path = _saved_tiny_bert(tmp_path)
    loaded = masked_lm(vocab_size=40, name_or_path=path, dtype="bfloat16")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert masked_lm(vocab_size=40, name_or_path=path).model.dtype == torch.float32


def test_rope_inference_form_equals_the_training_form() -> None:
    from llada.models.native import RotaryEmbedding

    rope = RotaryEmbedding(head_dim=48, max_len=64)
    qkv = torch.randn(3, 20, 3, 4, 48)  # the layout attention rotates: views of a fused qkv
    x = qkv.permute(2, 0, 3, 1, 4)[1]  # (B, H, L, D), strided
    for positions in (5, torch.tensor([3, 4, 5, 9, 10] * 4)):
        training = rope(x.clone().requires_grad_(), positions)  # the autograd form
        with torch.no_grad():  # the complex-multiply form: the same up to FMA rounding
            torch.testing.assert_close(rope(x, positions), training.detach(), rtol=0, atol=1e-6)


@torch.no_grad()
def test_output_columns_equal_the_sliced_full_logits() -> None:
    torch.manual_seed(0)
    net = NativeTransformer(vocab_size=50, dim=32, n_layers=2, n_heads=4, max_len=32).eval()
    ids = torch.randint(0, 50, (3, 12))
    attention = torch.ones_like(ids)
    attention[0, :4] = 0  # left padding
    full = net(ids, attention)  # (B, L, V)
    for start, end in ((0, 4), (5, 9), (8, 12)):
        columns = net(ids, attention, output_columns=(start, end))
        assert columns.shape == (3, end - start, 50)
        torch.testing.assert_close(columns, full[:, start:end], rtol=1e-5, atol=1e-5)
    causal = NativeTransformer(vocab_size=50, dim=32, n_layers=1, n_heads=4, causal=True)
    with pytest.raises(ValueError, match="bidirectional"):
        causal(ids, output_columns=(0, 4))
