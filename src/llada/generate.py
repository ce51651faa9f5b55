"""`python -m llada.generate ckpt=PATH [prompt="..."] [n_tokens=50] [sampler=greedy] [remasking=...]`.

A prompt with `[MASK]` or `[MASK]xN` slots is filled in place (infilling, any order). Text goes to
stdout, the cost line (NFE, seconds, tokens/s) to stderr. `visualize=true` animates the denoising in
the terminal; `viz.gif=out.gif` / `viz.html=out.html` save it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from llada.cli import CONF_DIR, default_device, require_ckpt
from llada.config_schema import check_generate_config
from llada.errors import fail_cleanly
from llada.generation import MASK_SLOT, Generation, GenerationSettings
from llada.precision import autocast_for, resolve_precision
from llada.text_model import TextModel, load_text_model


def is_template(prompt: str | list[str] | None) -> bool:
    prompts = prompt if isinstance(prompt, list) else [prompt]
    return any(isinstance(p, str) and MASK_SLOT.search(p) for p in prompts)


def show_trajectory(model: TextModel, out: Generation, start: int, cfg: DictConfig) -> None:
    """Terminal animation and/or GIF / HTML files of the first sample's denoising."""
    from llada import viz

    frames = viz.frames_from_trajectory(out.trajectory, model.tokenizer, model.mask_id, start=start)
    if cfg.visualize:
        viz.animate_in_terminal(frames, fps=cfg.viz.fps)
    if cfg.viz.gif:
        print(f"gif: {viz.save_gif(frames, cfg.viz.gif, fps=cfg.viz.fps)}", file=sys.stderr)
    if cfg.viz.html:
        print(f"html: {viz.save_html(frames, cfg.viz.html)}", file=sys.stderr)


def decode(
    model: TextModel, prompt: Any, settings: dict[str, Any], record: bool, cfg: DictConfig
) -> tuple[Generation, int]:
    """Sample after the prompt(s), or fill a template's slots. -> (generation, first column)."""
    if is_template(prompt):
        settings.pop("n_tokens", None)
        return model.infill_with_info(prompt, seed=cfg.seed, record=record, **settings), 0
    if cfg.n_tokens is not None:
        settings["n_tokens"] = cfg.n_tokens
    out = model.generate_with_info(
        prompt, num_samples=cfg.num_samples, seed=cfg.seed, record=record, **settings
    )
    return out, out.trajectory[0].shape[1] - out.tokens.shape[1] if out.trajectory else 0


def run_generation(cfg: DictConfig) -> list[dict[str, Any]]:
    """Load `cfg.ckpt`, sample (or infill), print each text; returns one record per sample."""
    check_generate_config(cfg)
    require_ckpt(cfg.get("ckpt"))
    device = default_device(cfg.device)
    model = load_text_model(cfg.ckpt, map_location=device)  # no Lightning: starts fast
    settings = GenerationSettings.group_values(cfg.get("sampler"), cfg.get("remasking"))
    prompt = OmegaConf.to_container(cfg.prompt) if OmegaConf.is_list(cfg.prompt) else cfg.prompt
    record = bool(cfg.visualize or cfg.viz.gif or cfg.viz.html)
    precision = resolve_precision(str(cfg.precision), model.device.type)
    with autocast_for(precision, model.device.type):
        out, start = decode(model, prompt, settings, record, cfg)
    if record:
        show_trajectory(model, out, start, cfg)
    records = [
        {"prompt": p, "text": text, **out.settings, "nfe": out.nfe, "sample_nfe": own,
         "seconds": round(out.seconds, 4), "tokens_per_second": round(out.tokens_per_second, 1)}
        for p, text, own in zip(out.prompts, out.texts, out.sample_nfe, strict=True)
    ]  # fmt: skip
    for record_ in records:
        print(record_["text"] if cfg.plain else json.dumps(record_))
    print(
        f"nfe={out.nfe} seconds={out.seconds:.3f} tokens/s={out.tokens_per_second:.1f} "
        f"sampler={out.settings['sampler']} remasking={out.settings['remasking']} "
        f"precision={precision}",
        file=sys.stderr,
    )
    return records


@hydra.main(config_path=CONF_DIR, config_name="generate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with fail_cleanly():
        run_generation(cfg)


if __name__ == "__main__":
    sys.exit(main())
