"""Hugging Face masked-LM backbones (DistilBERT, BERT, RoBERTa, ModernBERT, ..., llada's own exports).

Random init from a config works offline; `pretrained=<hub name or local dir>` loads weights. Hub names
are resolved from the local cache first and fail fast with one clear line when the hub is unreachable.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    DistilBertConfig,
    DistilBertForMaskedLM,
    PreTrainedModel,
)

from llada.hub import resolve_pretrained

# Registers the native backbone's HF classes: `model=hf model.name_or_path=<llada.export dir>`.
from llada.models import hf_native  # noqa: F401


class HFMaskedLM(nn.Module):
    """Adapter: any `AutoModelForMaskedLM` behind the backbone interface (ids, mask) -> logits."""

    causal = False  # masked LMs attend both ways
    supports_output_mask = False
    supports_kv_cache = False

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    @classmethod
    def from_config_dict(cls, config: dict[str, Any]) -> HFMaskedLM:
        """Rebuild from a saved config (random weights; the checkpoint supplies them)."""
        hf_config = AutoConfig.for_model(**config)
        return cls(AutoModelForMaskedLM.from_config(hf_config))

    @property
    def max_len(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def recipe(self) -> dict[str, Any]:
        return {
            "_target_": f"{__name__}.{type(self).__qualname__}.from_config_dict",
            "config": self.model.config.to_dict(),
        }

    def fit_vocab(self, vocab_size: int) -> None:
        """Grow the embeddings when the tokenizer gained tokens (e.g. an added [MASK])."""
        if self.model.get_input_embeddings().num_embeddings < vocab_size:
            self.model.resize_token_embeddings(vocab_size)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, L, V)


def distilbert(
    vocab_size: int,
    pretrained: str | None = None,
    dim: int = 256,
    n_layers: int = 4,
    n_heads: int = 4,
    hidden_dim: int = 1024,
    max_position_embeddings: int = 512,
    dropout: float = 0.0,
) -> HFMaskedLM:
    """`DistilBertForMaskedLM`: random init sized by the arguments, or `pretrained` weights."""
    if pretrained:
        return HFMaskedLM(resolve_pretrained(DistilBertForMaskedLM, pretrained))
    config = DistilBertConfig(
        vocab_size=vocab_size,
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        hidden_dim=hidden_dim,
        max_position_embeddings=max_position_embeddings,
        dropout=dropout,
        attention_dropout=dropout,
    )
    return HFMaskedLM(DistilBertForMaskedLM(config))


def masked_lm(
    vocab_size: int,
    name_or_path: str,
    pretrained: bool = True,
    trust_remote_code: bool = False,
    dtype: str | None = None,
    device_map: str | None = None,
) -> HFMaskedLM:
    """Any `AutoModelForMaskedLM` by hub name or local directory (weights, or its config only).

    `dtype` ("bfloat16", ...) loads the weights in that precision, and `device_map` ("auto")
    spreads a model too big for one device over the available ones (accelerate): both for large
    checkpoints such as LLaDA-8B, mainly for sampling and evaluation.
    """
    if pretrained:
        options: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if dtype:
            options["dtype"] = getattr(torch, dtype)
        if device_map:
            options["device_map"] = device_map
        return HFMaskedLM(resolve_pretrained(AutoModelForMaskedLM, name_or_path, **options))
    config = resolve_pretrained(AutoConfig, name_or_path, trust_remote_code=trust_remote_code)
    config.vocab_size = vocab_size
    return HFMaskedLM(AutoModelForMaskedLM.from_config(config, trust_remote_code=trust_remote_code))
