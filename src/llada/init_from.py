"""`model.init_from=AR.ckpt`: start a diffusion run's backbone from one of our AR checkpoints.

The cheapest way to a diffusion LM is an autoregressive one (ALGORITHMS.md section 8): the same
native network, trained with `model=ar_tiny`, gives its weights; the objective's pattern replaces
the causal mask and `model.token_shift=true` keeps the AR's next-token reading. The run also
takes the checkpoint's tokenizer, so the embedding rows mean what they meant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from llada import checkpoint_format
from llada.checkpoint_format import EMA_KEY
from llada.data.tokenizer import tokenizer_from_state

AR_OBJECTIVE = checkpoint_format.FORMAT_1_OBJECTIVES["autoregressive"]


def read_ar_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], Any]:
    """(backbone weights, tokenizer) of an AR checkpoint; anything else is a one-line error."""
    checkpoint, meta = checkpoint_format.read(path, "cpu")
    target = checkpoint_format.objective_recipe(meta)["_target_"]
    if target != AR_OBJECTIVE:
        raise ValueError(
            f"model.init_from={path} is a {meta.get('lm', target)} checkpoint; init_from takes an "
            "autoregressive one (trained with model=ar_tiny); to continue a diffusion run use "
            "ckpt_path=..."
        )
    weights = {**checkpoint["state_dict"], **checkpoint.get(EMA_KEY, {})}  # the EMA if kept
    backbone = {
        name.removeprefix("backbone."): value
        for name, value in weights.items()
        if name.startswith("backbone.")
    }
    return backbone, tokenizer_from_state(meta["tokenizer"])


def load_backbone_weights(backbone: nn.Module, weights: dict[str, torch.Tensor], path: str) -> None:
    """Copy `weights` into `backbone`; shapes that do not match name the model keys to set."""
    own = backbone.state_dict()
    mismatched = [
        f"{name} {tuple(value.shape)} vs {tuple(own[name].shape)}"
        for name, value in weights.items()
        if name in own and own[name].shape != value.shape
    ]
    missing = sorted(set(own) - set(weights))
    if mismatched or missing:
        problem = f"shape {mismatched[0]}" if mismatched else f"no {missing[0]}"
        raise ValueError(
            f"model.init_from={path} does not fit the model ({problem}); give the model the AR "
            "run's sizes (model.dim, model.n_layers, model.n_heads, model.mlp_hidden)"
        )
    backbone.load_state_dict(weights, strict=False)
