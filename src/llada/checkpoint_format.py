"""The llada section of a checkpoint: what rebuilds a model from the `.ckpt` alone.

Plain data only (recipes, the tokenizer's JSON, settings), so checkpoints load with
`torch.load(weights_only=True)` and no code runs from the file. Format 2 stores the objective as a
`_target_` recipe beside the backbone and masking ones; format 1 (before objectives) stored
`"lm": "diffusion" | "autoregressive"`, which maps to the `mdm` / `ar` objective.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import torch

from llada.data.tokenizer import tokenizer_from_state, tokenizer_to_state

SECTION = "llada"
FORMAT = 2
EMA_KEY = "ema_state_dict"  # the averaged weights, when the run kept an EMA (`llada.ema`)
FORMAT_1_OBJECTIVES = {  # format 1's "lm" kinds
    "diffusion": "llada.diffusion.mdm.MaskedDiffusion",
    "autoregressive": "llada.diffusion.next_token.NextToken",
}


def section(model: Any) -> dict[str, Any]:
    """The llada section written into every checkpoint of `model` (a DiffusionLM)."""
    if not hasattr(model.backbone, "recipe"):
        raise TypeError(f"{type(model.backbone).__name__} needs a recipe() to be checkpointed")
    return {
        "format": FORMAT,
        "lm": model.objective.lm_kind,  # informative; readers of format 2 use "objective"
        "objective": model.objective.recipe(),
        "objective_state": model.objective.state(),
        "backbone": model.backbone.recipe(),
        "tokenizer": tokenizer_to_state(model.tokenizer),
        "masking": model.objective.schedule.recipe(),
        "generation": model.generation.as_dict(),
        "tokens_seen": model.tokens_seen,
        "data": model.data_config,
        # The masking draws use the global RNG: restoring it makes a resumed run exact.
        "torch_rng_state": torch.get_rng_state(),
    }


def read(path: str | Path, map_location: str | torch.device) -> tuple[dict[str, Any], dict]:
    """(the checkpoint, its llada section); every failure is a one-line error naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint not found: {path} (pass the path of a .ckpt written by llada.train)"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated / foreign files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"cannot load checkpoint {path}: {type(error).__name__}: {first_line[:200]} "
            "(truncated, corrupt, or not a plain-data llada checkpoint)"
        ) from None
    meta = checkpoint.get(SECTION) if isinstance(checkpoint, dict) else None
    if meta is None:
        raise ValueError(f"{path} is not a llada checkpoint (no '{SECTION}' section)")
    return checkpoint, meta


def objective_recipe(meta: dict[str, Any]) -> dict[str, Any]:
    """The objective recipe of a format-2 section, or the one a format-1 "lm" kind stands for."""
    if "objective" in meta:
        return dict(meta["objective"])
    kind = meta.get("lm", "diffusion")
    if kind not in FORMAT_1_OBJECTIVES:
        raise ValueError(
            f"unknown LM kind {kind!r} in checkpoint; allowed: {', '.join(FORMAT_1_OBJECTIVES)}"
        )
    return {"_target_": FORMAT_1_OBJECTIVES[kind]}


def build_parts(meta: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments of the model a section describes (weights not loaded)."""
    return {
        "backbone": hydra.utils.instantiate(meta["backbone"]),
        "tokenizer": tokenizer_from_state(meta["tokenizer"]),
        "schedule": hydra.utils.instantiate(meta["masking"]),
        "objective": hydra.utils.instantiate(objective_recipe(meta), _partial_=True),
        "generation": meta["generation"],
    }


def load_weights(
    model: Any, checkpoint: dict[str, Any], meta: dict[str, Any], use_ema: bool
) -> None:
    """Load a checkpoint's weights into `model` (its EMA's when kept and `use_ema`) and restore
    the objective's state (e.g. block diffusion's chosen clip)."""
    model.load_state_dict(checkpoint["state_dict"])
    if use_ema and EMA_KEY in checkpoint:
        model.load_state_dict(checkpoint[EMA_KEY], strict=False)
    model.data_config = meta.get("data")
    model.objective.load_state(meta.get("objective_state", {}))
