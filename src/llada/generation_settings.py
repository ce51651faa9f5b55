"""Turn the `sampler` and `remasking` config groups into `DiffusionLM.generate` keyword arguments."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def generation_settings(
    sampler: DictConfig | dict | None, remasking: DictConfig | dict | None
) -> dict[str, Any]:
    """{"sampler": name, steps, n_tokens, ..., "remasking": name, "remasking_options": {...}}.

    Missing groups give no keys, so the checkpoint's own settings apply.
    """
    settings: dict[str, Any] = {}
    if sampler is not None:
        sampler_dict = dict(OmegaConf.to_container(OmegaConf.create(sampler), resolve=True))
        settings["sampler"] = sampler_dict.pop("name")
        settings.update(sampler_dict)
    if remasking is not None:
        remasking_dict = dict(OmegaConf.to_container(OmegaConf.create(remasking), resolve=True))
        settings["remasking"] = remasking_dict.pop("name")
        settings["remasking_options"] = remasking_dict  # e.g. threshold, sigma
    return settings
