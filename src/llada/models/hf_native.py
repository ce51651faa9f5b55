"""The native backbone as a Hugging Face model: export it, share it, load it with `transformers`.

`LladaNativeConfig` holds NativeTransformer's hparams. `LladaNativeForMaskedLM` (bidirectional: the
diffusion mask predictor) and `LladaNativeForCausalLM` (`causal=True`: the autoregressive baseline)
hold the very same module under `model.`, so their state dict is NativeTransformer's with that
prefix and weights move between llada checkpoints and `save_pretrained` directories unrenamed.

Importing this module registers the classes with the Auto classes (`llada.models.hf` imports it, so
`model=hf model.name_or_path=<exported dir>` works). `llada.export` also copies this file and
native.py into every exported directory (`auto_map`), so `trust_remote_code=True` loads an export
where llada is not installed. Keep this file free of other llada imports for that reason.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    GenerationMixin,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers import __version__ as TRANSFORMERS_VERSION
from transformers.modeling_outputs import CausalLMOutput, MaskedLMOutput

from llada.models.native import NativeTransformer, RMSNorm, RotaryEmbedding

MODEL_TYPE = "llada_native"
IGNORE_INDEX = -100  # HF's label value for "not scored"
# transformers 5 maps tied {target: source}; 4.x lists the targets.
_TIED = (
    {"model.lm_head.weight": "model.embed.weight"}
    if int(TRANSFORMERS_VERSION.split(".")[0]) >= 5
    else ["model.lm_head.weight"]
)


def default_mlp_hidden(dim: int) -> int:
    """NativeTransformer's SwiGLU width when none is given: ~8/3 * dim rounded up to 256."""
    return 256 * ((8 * dim // 3 + 255) // 256)


def native_parameter_count(
    vocab_size: int,
    dim: int,
    n_layers: int,
    n_heads: int = 1,
    mlp_hidden: int | None = None,
    tie_embeddings: bool = True,
    **_: Any,
) -> int:
    """Parameters of a NativeTransformer with these hparams, without building it (8B on a laptop).

    Per block: fused qkv (3 d^2) + out (d^2) + SwiGLU gate_up (2 d h) + down (h d) + 2 RMSNorms (2 d).
    The other hparams (max_len, causal, rope_theta, ...) own no parameters.
    """
    hidden = mlp_hidden or default_mlp_hidden(dim)
    block = 4 * dim * dim + 3 * dim * hidden + 2 * dim
    embeddings = vocab_size * dim * (1 if tie_embeddings else 2)
    return embeddings + n_layers * block + dim  # + the final RMSNorm


class LladaNativeConfig(PretrainedConfig):
    """NativeTransformer's hparams under their own names (HF's common names are aliases).

    `tie_word_embeddings` is NativeTransformer's `tie_embeddings` (transformers reads that name to
    tie and to save the shared matrix once). Token ids are for users of the export: `mask_token_id`
    is the [MASK] the diffusion model unmasks.
    """

    model_type = MODEL_TYPE
    attribute_map = {  # noqa: RUF012 (a transformers class attribute)
        "hidden_size": "dim",
        "num_hidden_layers": "n_layers",
        "num_attention_heads": "n_heads",
        "intermediate_size": "mlp_hidden",
        "max_position_embeddings": "max_len",
    }

    def __init__(
        self,
        vocab_size: int = 4096,
        dim: int = 256,
        n_layers: int = 4,
        n_heads: int = 4,
        mlp_hidden: int | None = None,
        max_len: int = 1024,
        causal: bool = False,
        rope_theta: float = 10000.0,
        init_std: float = 0.02,
        tie_word_embeddings: bool = True,
        mask_token_id: int | None = None,
        token_shift: bool = False,
        **kwargs: Any,
    ) -> None:
        self.token_shift = token_shift  # predictions read from the output before (AR-adapted)
        self.vocab_size, self.dim, self.n_layers, self.n_heads = vocab_size, dim, n_layers, n_heads
        self.mlp_hidden = mlp_hidden or default_mlp_hidden(dim)
        self.max_len, self.causal = max_len, causal
        self.rope_theta, self.init_std = float(rope_theta), init_std
        self.mask_token_id = mask_token_id
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.tie_word_embeddings = tie_word_embeddings  # transformers 5 has no such base field

    @classmethod
    def from_native_hparams(cls, hparams: dict[str, Any], **kwargs: Any) -> LladaNativeConfig:
        """From `NativeTransformer.hparams` (+ e.g. token ids)."""
        hparams = dict(hparams)
        hparams["tie_word_embeddings"] = hparams.pop("tie_embeddings", True)
        return cls(**hparams, **kwargs)

    def native_hparams(self) -> dict[str, Any]:
        """The NativeTransformer arguments that rebuild this network."""
        return {
            "vocab_size": self.vocab_size, "dim": self.dim, "n_layers": self.n_layers,
            "n_heads": self.n_heads, "mlp_hidden": self.mlp_hidden, "max_len": self.max_len,
            "tie_embeddings": bool(self.tie_word_embeddings), "causal": bool(self.causal),
            "rope_theta": self.rope_theta, "init_std": self.init_std,
            "token_shift": bool(self.token_shift),
        }  # fmt: skip


class LladaNativePreTrainedModel(PreTrainedModel):
    """Shared loading logic: the NativeTransformer lives at `self.model` (state dict prefix `model.`)."""

    config_class = LladaNativeConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ["Block"]  # noqa: RUF012 (device_map="auto" keeps a block on one device)
    _tied_weights_keys = _TIED
    is_causal_lm = False  # which attention this head class is for (the config must agree)

    def __init__(self, config: LladaNativeConfig) -> None:
        super().__init__(config)
        if bool(config.causal) != self.is_causal_lm:
            kind = "causal (autoregressive)" if config.causal else "bidirectional (masked)"
            loader = "AutoModelForCausalLM" if config.causal else "AutoModelForMaskedLM"
            raise ValueError(
                f"this {MODEL_TYPE} model is {kind}: load it with {loader}, not "
                f"{type(self).__name__}"
            )
        self.model = NativeTransformer(**config.native_hparams())
        self.post_init()

    @classmethod
    def from_native(cls, backbone: NativeTransformer, **config_kwargs: Any) -> Any:
        """Wrap a trained NativeTransformer (no copy); the head class follows `backbone.causal`."""
        config = LladaNativeConfig.from_native_hparams(backbone.hparams, **config_kwargs)
        head = LladaNativeForCausalLM if config.causal else LladaNativeForMaskedLM
        with torch.device("meta"):  # a placeholder: no memory, no init (8B would take minutes)
            model = head(config)
        model.model = backbone
        return model

    def _init_weights(self, module: nn.Module) -> None:
        """Native init for random weights; RoPE tables always (non-persistent: never saved).

        transformers calls this per module after loading, with init functions that skip loaded
        weights, and builds from_pretrained models on the meta device, so the tables are rebuilt.
        """
        if isinstance(module, RotaryEmbedding):
            head_dim, max_len = self.config.dim // self.config.n_heads, self.config.max_len
            with torch.device("cpu"), torch.no_grad():
                tables = RotaryEmbedding(head_dim, max_len, self.config.rope_theta)
                module.cos.copy_(tables.cos)  # (max_len, head_dim / 2)
                module.sin.copy_(tables.sin)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        elif isinstance(module, NativeTransformer):
            module._init_weights(self.config.init_std, self.config.n_layers)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.embed = value

    def get_output_embeddings(self) -> nn.Module:
        return self.model.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.model.lm_head = value

    def _logits(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        return self.model(input_ids, attention_mask)  # (B, L, V)


class LladaNativeForMaskedLM(LladaNativePreTrainedModel):
    """Bidirectional mask predictor: logits (B, L, V) at every position.

    `labels` (B, L) with -100 where not scored gives the mean cross-entropy over the others
    (HF's masked-LM loss, not the diffusion ELBO: the 1/t weights belong to the training loop).
    """

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        **kwargs: Any,  # e.g. token_type_ids from a tokenizer call: unused
    ) -> MaskedLMOutput:
        logits = self._logits(input_ids, attention_mask)  # (B, L, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
            )
        return MaskedLMOutput(loss=loss, logits=logits)


class LladaNativeForCausalLM(LladaNativePreTrainedModel, GenerationMixin):
    """Left-to-right LM: logits (B, L, V), position i predicting token i + 1.

    `labels` (B, L) are the inputs themselves (shifted here, -100 = not scored): HF semantics.
    llada's AR baseline starts every sequence with the [EOS] token (`bos_token_id`); prepend it.
    No KV cache: `generate()` recomputes the prefix each step (`use_cache=False`).
    """

    is_causal_lm = True

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        **kwargs: Any,  # generate() passes use_cache, position ids, ...: unused
    ) -> CausalLMOutput:
        logits = self._logits(input_ids, attention_mask)  # (B, L, V)
        loss = None
        if labels is not None:
            shifted = logits[:, :-1].float().flatten(0, 1)  # (B * (L - 1), V)
            loss = F.cross_entropy(shifted, labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The whole sequence every step (there is no cache to continue from)."""
        return {"input_ids": input_ids, "attention_mask": attention_mask}


def register_auto_classes() -> None:
    """`AutoConfig`/`AutoModel*` resolve `model_type: llada_native` to these classes.

    AutoModel gives the masked LM, like LLaDA-8B's own `auto_map` does.
    """
    AutoConfig.register(MODEL_TYPE, LladaNativeConfig, exist_ok=True)
    AutoModel.register(LladaNativeConfig, LladaNativeForMaskedLM, exist_ok=True)
    AutoModelForMaskedLM.register(LladaNativeConfig, LladaNativeForMaskedLM, exist_ok=True)
    AutoModelForCausalLM.register(LladaNativeConfig, LladaNativeForCausalLM, exist_ok=True)


register_auto_classes()
