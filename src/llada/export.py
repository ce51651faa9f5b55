"""`python -m llada.export ckpt=PATH out=DIR`: a checkpoint as a Hugging Face model directory.

Writes the backbone with `save_pretrained` (safetensors), the checkpoint's tokenizer beside it and a
README saying how to load both. A native backbone becomes `LladaNativeForMaskedLM` (the autoregressive
baseline `LladaNativeForCausalLM`) with its code copied in (`trust_remote_code=True` loads it where
llada is not installed); an HF backbone (model=distilbert, model=hf) is saved as itself. The EMA
weights are exported when the run kept them (`use_ema=false`: the live ones).

`out` must not exist or be empty; `overwrite=true` replaces an earlier export, never any other
directory. Everything is written to a hidden folder beside `out` and renamed at the end, so an
interrupted export leaves no directory that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from transformers import PreTrainedModel

from llada.checkpoint_format import EMA_KEY
from llada.cli import CONF_DIR, require_ckpt
from llada.data.tokenizer import eos_id
from llada.errors import fail_cleanly
from llada.models import hf_native, native
from llada.models.hf import HFMaskedLM
from llada.models.hf_causal import HFCausalLM
from llada.models.hf_native import LladaNativePreTrainedModel
from llada.models.native import NativeTransformer
from llada.module import CHECKPOINT_KEY, DiffusionLM

REMOTE_MODULE = "modeling_llada_native"  # the wrapper's copy in an export (auto_map points here)
REMOTE_BACKBONE = "native_transformer"  # native.py's copy, imported relatively by the wrapper
NATIVE_IMPORT = "from llada.models.native import"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_destination(out: Path, ckpt: Path, overwrite: bool) -> None:
    """Fail before any work when `out` cannot be (re)placed: earlier outputs are never lost."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out={out} is a file; pass the path of a directory to create")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"out={out} already exists and is not empty; pick another out, or pass "
            "overwrite=true to replace an earlier export"
        )
    if not (out / "config.json").is_file():
        raise FileExistsError(
            f"out={out} is not an earlier export (no config.json); overwrite=true only replaces "
            "exports, pick another out"
        )
    if ckpt.resolve().is_relative_to(out.resolve()):
        raise FileExistsError(f"out={out} holds the checkpoint being exported; pick another out")


def hf_model_of(model: DiffusionLM) -> PreTrainedModel:
    """The backbone as a `PreTrainedModel`: the native one wrapped (no copy), an HF one as it is."""
    backbone = model.backbone
    if isinstance(backbone, HFMaskedLM):
        return backbone.model
    if isinstance(backbone, HFCausalLM):  # AutoModelForCausalLM reloads it; the pattern and
        backbone.model.config.mask_token_id = model.mask_id  # shift are how llada runs it
        backbone.model.config.llada_token_shift = backbone.token_shift
        return backbone.model
    if isinstance(backbone, NativeTransformer):
        tokenizer = model.tokenizer
        token_ids: dict[str, Any] = {
            "mask_token_id": model.mask_id,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": eos_id(tokenizer),
        }
        if backbone.causal:  # the AR baseline reads every sequence from an [EOS] start token
            token_ids["bos_token_id"] = eos_id(tokenizer)
        return LladaNativePreTrainedModel.from_native(backbone, **token_ids)
    raise TypeError(
        f"cannot export a {type(backbone).__name__} backbone; supported: NativeTransformer "
        "(model=tiny/small/...), HF masked LMs (model=distilbert, model=hf) and HF causal LMs "
        "(model=hf_causal)"
    )


def write_remote_code(directory: Path, hf_model: PreTrainedModel) -> None:
    """Copy the model code in and point `auto_map` at it: `trust_remote_code=True` needs no llada."""
    wrapper = Path(hf_native.__file__).read_text(encoding="utf-8")
    if wrapper.count(NATIVE_IMPORT) != 1:
        raise RuntimeError(
            f"{hf_native.__file__} must import the backbone with one '{NATIVE_IMPORT}'"
        )
    wrapper = wrapper.replace(NATIVE_IMPORT, f"from .{REMOTE_BACKBONE} import")
    (directory / f"{REMOTE_MODULE}.py").write_text(wrapper, encoding="utf-8")
    shutil.copyfile(native.__file__, directory / f"{REMOTE_BACKBONE}.py")
    head = type(hf_model).__name__
    task = "AutoModelForCausalLM" if hf_model.config.causal else "AutoModelForMaskedLM"
    config_file = directory / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["auto_map"] = {
        "AutoConfig": f"{REMOTE_MODULE}.{type(hf_model.config).__name__}",
        "AutoModel": f"{REMOTE_MODULE}.{head}",
        task: f"{REMOTE_MODULE}.{head}",
    }
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def model_card(
    out: Path, hf_model: PreTrainedModel, model: DiffusionLM, source: str, tokens_seen: int
) -> str:
    """README.md: what the directory holds and the lines that load it."""
    native_export = isinstance(hf_model, LladaNativePreTrainedModel)
    causal = bool(getattr(hf_model.config, "causal", False))
    adapted = isinstance(model.backbone, HFCausalLM)  # a causal LM turned diffusion model
    auto = "AutoModelForCausalLM" if causal or adapted else "AutoModelForMaskedLM"
    remote = ", trust_remote_code=True" if native_export else ""
    kind = "autoregressive LM" if causal else "masked diffusion LM (mask predictor)"
    n_params = sum(p.numel() for p in hf_model.parameters())
    settings = {
        "lm": model.lm_kind,
        "objective": model.objective.recipe(),
        "masking": model.schedule.recipe(),
        "generation": model.generation.as_dict(),
        "tokens_seen": tokens_seen,
    }
    lines = [
        "---",
        "library_name: transformers",
        f"tags: [llada, {'autoregressive' if causal else 'masked-diffusion'}]",
        "---",
        f"# {out.name}",
        "",
        f"A {type(hf_model).__name__} ({n_params / 1e6:.2f}M parameters), a {kind}, exported by "
        f"`python -m llada.export` from {source}.",
        "",
        "```python",
        f"from transformers import {auto}, AutoTokenizer",
        "",
        f'model = {auto}.from_pretrained("{out}"{remote})',
        f'tokenizer = AutoTokenizer.from_pretrained("{out}")',
        'logits = model(**tokenizer("some text", return_tensors="pt")).logits  # (1, L, vocab)',
        "```",
        "",
    ]
    if native_export:
        lines += [
            "The model code ships in this directory (`trust_remote_code=True`); with llada "
            "installed, `import llada.models.hf_native` registers it instead.",
            "",
        ]
    if adapted:
        lines += [
            "Adapted from a causal LM: the weights load with the Auto class above, but llada runs "
            f"them with the {model.objective.attention} attention of its objective (a 4-D mask, "
            "not the causal one)"
            + (
                " and token shift (position i is predicted at i-1)"
                if model.backbone.token_shift
                else ""
            )
            + f"; `{model.tokenizer.mask_token}` (id {model.mask_id}) is the mask token. Use "
            f"it as a diffusion model with `python -m llada.train model=hf_causal "
            f"model.name_or_path={out}`.",
            "",
        ]
    elif causal:
        lines += ["Sequences start with the `[EOS]` token (`bos_token_id`), as in training.", ""]
    else:
        lines += [
            f"`{model.tokenizer.mask_token}` (id {model.mask_id}) marks the positions the model "
            "predicts; sample by unmasking an all-mask canvas over several steps.",
            "",
        ]
    entry = "hf_causal" if adapted else "hf"
    lines += [
        f"Train further or sample with llada: `python -m llada.train model={entry} "
        f"model.name_or_path={out}`.",
        "",
        "Training settings from the checkpoint:",
        "",
        "```json",
        json.dumps(settings, indent=2, default=str),
        "```",
        "",
    ]
    return "\n".join(lines)


def publish(staging: Path, out: Path) -> None:
    """Rename the finished folder to `out`; an earlier export there is moved aside, then removed."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        staging.rename(out)
        return
    previous = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    out.rename(previous / out.name)
    staging.rename(out)
    shutil.rmtree(previous)


def export(cfg: DictConfig) -> Path:
    """Export `cfg.ckpt` into the new directory `cfg.out`; returns its path."""
    require_ckpt(cfg.get("ckpt"))
    if not cfg.get("out"):
        raise ValueError("no output directory given; pass out=<directory to create>")
    if cfg.dtype is not None and cfg.dtype not in DTYPES:
        raise ValueError(f"dtype={cfg.dtype} is not one of {', '.join(DTYPES)} (or null)")
    ckpt, out = Path(cfg.ckpt).expanduser(), Path(cfg.out).expanduser()
    check_destination(out, ckpt, bool(cfg.overwrite))

    model = DiffusionLM.load_from_checkpoint(ckpt, map_location="cpu", use_ema=cfg.use_ema)
    # Memory-mapped: what the checkpoint holds besides the weights, without a second copy of them.
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    has_ema, tokens_seen = EMA_KEY in checkpoint, checkpoint[CHECKPOINT_KEY].get("tokens_seen", 0)
    del checkpoint
    hf_model = hf_model_of(model)
    if cfg.dtype is not None:
        hf_model.to(DTYPES[cfg.dtype])
    weights = "EMA" if cfg.use_ema and has_ema else "live (not averaged)"

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary folder
    try:
        hf_model.save_pretrained(staging)  # safetensors
        model.tokenizer.save_pretrained(staging)
        if isinstance(hf_model, LladaNativePreTrainedModel):
            write_remote_code(staging, hf_model)
        card = model_card(out, hf_model, model, f"`{ckpt}` ({weights} weights)", tokens_seen)
        (staging / "README.md").write_text(card, encoding="utf-8")
        publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"exported {type(hf_model).__name__} ({weights} weights) to {out}", file=sys.stderr)
    return out


@hydra.main(config_path=CONF_DIR, config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with fail_cleanly():
        export(cfg)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
