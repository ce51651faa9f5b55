"""Any Hugging Face causal LM as a diffusion backbone: `model=hf_causal` (AR-to-diffusion).

The causal mask is replaced, not the modeling code: every call passes the model a 4-D additive
attention mask (which transformers uses as given) built from the pattern the objective asks for
(bidirectional for mdm, block-causal for bd3), plus position ids that ignore left padding. A
family whose attention does not take a 4-D mask fails at build time with one line. With
`token_shift` (the default, as in DiffuLLaMA / Dream) the prediction for position i is read
from the output at i-1, as the AR model was trained to do (`native.shifted`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from llada.hub import resolve_pretrained
from llada.models.native import shifted


class HFCausalLM(nn.Module):
    """Adapter: an `AutoModelForCausalLM` attending with the objective's pattern."""

    causal = False  # the causal mask is replaced by the objective's pattern
    supports_output_mask = True  # the shift needs full logits; only the asked rows return
    supports_kv_cache = False
    supports_attention_pattern = True

    def __init__(self, model: PreTrainedModel, token_shift: bool = True) -> None:
        super().__init__()
        self.model, self.token_shift = model, token_shift
        self._check_family()

    def _check_family(self) -> None:
        """A family that cannot take a 4-D mask: one line now, not wrong logits later."""
        if getattr(self.model.config, "is_encoder_decoder", False):
            raise ValueError(
                f"model=hf_causal needs a decoder-only causal LM; {type(self.model).__name__} "
                "is an encoder-decoder (use model=hf for masked LMs)"
            )
        implementation = getattr(self.model.config, "_attn_implementation", None)
        if implementation not in (None, "eager", "sdpa"):
            raise ValueError(
                f"model=hf_causal passes a 4-D attention mask, which attn_implementation="
                f"{implementation!r} does not take; load the model with 'sdpa' or 'eager'"
            )

    @classmethod
    def from_config_dict(cls, config: dict[str, Any], token_shift: bool = True) -> HFCausalLM:
        """Rebuild from a saved config (random weights; the checkpoint supplies them)."""
        hf_config = AutoConfig.for_model(**config)
        return cls(AutoModelForCausalLM.from_config(hf_config), token_shift)

    @property
    def max_len(self) -> int | None:
        config = self.model.config
        return getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )

    def recipe(self) -> dict[str, Any]:
        return {
            "_target_": f"{__name__}.{type(self).__qualname__}.from_config_dict",
            "config": self.model.config.to_dict(),
            "token_shift": self.token_shift,
        }

    def fit_vocab(self, vocab_size: int) -> None:
        """Grow the embeddings for added tokens (the mask token); new rows get the mean embedding."""
        embeddings = self.model.get_input_embeddings()
        old = embeddings.num_embeddings
        if old >= vocab_size:
            return
        mean = embeddings.weight[:old].detach().mean(dim=0)
        self.model.resize_token_embeddings(vocab_size, mean_resizing=False)
        with torch.no_grad():
            self.model.get_input_embeddings().weight[old:] = mean
            head = self.model.get_output_embeddings()
            if head is not None and head.weight is not self.model.get_input_embeddings().weight:
                head.weight[old:] = head.weight[:old].mean(dim=0)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        output_mask: Tensor | None = None,
        attention: Tensor | None = None,
        positions: Tensor | None = None,
        kv: Any = None,
    ) -> Tensor:
        """Logits (B, L, V), or (N, V) at `output_mask`; `attention` (L, L) or (B, L, L) bool."""
        if kv is not None:
            raise ValueError("model=hf_causal has no KV cache (set sampler.kv_cache=false)")
        batch, length = input_ids.shape
        device = input_ids.device
        visible = (
            torch.ones(batch, length, dtype=torch.bool, device=device)
            if attention_mask is None
            else attention_mask.bool()
        )
        pattern = (
            torch.ones(length, length, dtype=torch.bool, device=device)
            if attention is None
            else attention.bool()
        )
        allowed = (pattern if pattern.dim() == 3 else pattern[None]) & visible[:, None, :]
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=device)  # no empty row
        dtype = self.model.get_input_embeddings().weight.dtype
        additive = torch.zeros(allowed.shape, dtype=dtype, device=device)
        additive = additive.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]  # (B,1,L,L)
        if positions is None:  # left padding must not shift absolute positions
            position_ids = (visible.long().cumsum(dim=1) - 1).clamp_min(0)  # (B, L)
        else:
            position_ids = positions[None].expand(batch, -1)
        logits = self.model(
            input_ids=input_ids, attention_mask=additive, position_ids=position_ids
        ).logits  # (B, L, V)
        if self.token_shift:
            logits = shifted(logits, visible, pattern, positions)
        return logits if output_mask is None else logits[output_mask]


def causal_lm(
    vocab_size: int,
    name_or_path: str,
    pretrained: bool = True,
    token_shift: bool = True,
    trust_remote_code: bool = False,
    dtype: str | None = None,
) -> HFCausalLM:
    """Any `AutoModelForCausalLM` by hub name or local directory (weights, or its config only)."""
    options: dict[str, Any] = {
        "trust_remote_code": trust_remote_code,
        "attn_implementation": "sdpa",
    }
    config = resolve_pretrained(AutoConfig, name_or_path, trust_remote_code=trust_remote_code)
    if not any(
        name.endswith("ForCausalLM") or name.endswith("LMHeadModel")
        for name in config.architectures or ["ForCausalLM"]
    ):
        raise ValueError(
            f"model.name_or_path={name_or_path} is a {', '.join(config.architectures)}, not a "
            "causal LM; model=hf_causal takes an AutoModelForCausalLM (use model=hf for masked LMs)"
        )
    if pretrained:
        if dtype:
            options["dtype"] = getattr(torch, dtype)
        model = resolve_pretrained(AutoModelForCausalLM, name_or_path, **options)
        return HFCausalLM(model, token_shift)
    config.vocab_size = vocab_size
    return HFCausalLM(AutoModelForCausalLM.from_config(config, **options), token_shift)
