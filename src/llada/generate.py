"""`python -m llada.generate ckpt=PATH [prompt="..."] [n_tokens=50] [sampler=greedy] [remasking=...]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from llada.errors import fail_cleanly
from llada.generation_settings import generation_settings
from llada.module import DiffusionLM

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def run_generation(cfg: DictConfig) -> list[dict[str, Any]]:
    """Load `cfg.ckpt`, sample, print each text; returns one record per sample."""
    if not cfg.get("ckpt"):
        raise ValueError("no checkpoint given; pass ckpt=<path to a .ckpt written by llada.train>")
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = DiffusionLM.load_from_checkpoint(cfg.ckpt, map_location=device)
    settings = generation_settings(cfg.get("sampler"), cfg.get("remasking"))
    if cfg.n_tokens is not None:
        settings["n_tokens"] = cfg.n_tokens
    prompt = OmegaConf.to_container(cfg.prompt) if OmegaConf.is_list(cfg.prompt) else cfg.prompt
    out = model.generate_with_info(prompt, num_samples=cfg.num_samples, seed=cfg.seed, **settings)
    records = [
        {"prompt": p, "text": text, **out.settings, "nfe": out.nfe,
         "seconds": round(out.seconds, 4), "tokens_per_second": round(out.tokens_per_second, 1)}
        for p, text in zip(out.prompts, out.texts, strict=True)
    ]  # fmt: skip
    for record in records:
        print(record["text"] if cfg.plain else json.dumps(record))
    return records


@hydra.main(config_path=CONF_DIR, config_name="generate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with fail_cleanly():
        run_generation(cfg)


if __name__ == "__main__":
    sys.exit(main())
