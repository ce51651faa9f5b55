"""`model.init_from=<ckpt>`: start a run's backbone from one of our checkpoints.

Pretraining objectives take an AR checkpoint: the cheapest way to a diffusion LM is an
autoregressive one (ALGORITHMS.md section 8): the same native network, trained with
`model=ar_tiny`, gives its weights; the objective's pattern replaces the causal mask and
`model.token_shift=true` keeps the AR's next-token reading. Post-training objectives (grpo, vrpo)
take a diffusion checkpoint, and their reference model too (`objective.reference`). The run also
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

# What a kind of start needs, and how to make one (the hint of the error).
KIND_HINTS = {
    "autoregressive": "trained with model=ar_tiny; to continue a diffusion run use ckpt_path=...",
    "diffusion": "a trained MDM, e.g. from experiment=sudoku; to continue a run use ckpt_path=...",
}


def read_init_checkpoint(
    path: str | Path, kinds: tuple[str, ...] = ("autoregressive",), key: str = "model.init_from"
) -> tuple[dict[str, torch.Tensor], Any]:
    """(backbone weights, tokenizer) of a checkpoint of one of `kinds` (`lm_kind`s); anything
    else is a one-line error."""
    checkpoint, meta = checkpoint_format.read(path, "cpu")
    target = checkpoint_format.objective_recipe(meta)["_target_"]
    if target not in [checkpoint_format.FORMAT_1_OBJECTIVES[kind] for kind in kinds]:
        wanted = " or ".join(f"{kind} one ({KIND_HINTS[kind]})" for kind in kinds)
        raise ValueError(
            f"{key}={path} is a {meta.get('lm', target)} checkpoint; this objective takes an "
            f"{wanted}"
        )
    weights = {**checkpoint["state_dict"], **checkpoint.get(EMA_KEY, {})}  # the EMA if kept
    backbone = {
        name.removeprefix("backbone."): value
        for name, value in weights.items()
        if name.startswith("backbone.")
    }
    return backbone, tokenizer_from_state(meta["tokenizer"])


def load_backbone_weights(
    backbone: nn.Module, weights: dict[str, torch.Tensor], path: str, key: str = "model.init_from"
) -> None:
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
            f"{key}={path} does not fit the model ({problem}); give the model the checkpoint "
            "run's sizes (model.dim, model.n_layers, model.n_heads, model.mlp_hidden)"
        )
    backbone.load_state_dict(weights, strict=False)


def load_reference(
    path: str, backbone: nn.Module, tokenizer: Any, kinds: tuple[str, ...] = ("diffusion",)
) -> nn.Module:
    """A frozen copy of `backbone` with the weights of checkpoint `path` (objective.reference).

    Its tokenizer must be the policy's: the KL / likelihood ratios compare the same token ids.
    """
    from llada.diffusion.grpo import frozen_copy

    weights, reference_tokenizer = read_init_checkpoint(path, kinds, "objective.reference")
    if reference_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            f"objective.reference={path} has another vocabulary ({len(reference_tokenizer)} "
            f"tokens) than the policy ({len(tokenizer)}); give a checkpoint trained with the same "
            "tokenizer (e.g. the model.init_from checkpoint, the default)"
        )
    reference = frozen_copy(backbone)
    load_backbone_weights(reference, weights, path, "objective.reference")
    return reference
