"""What the `python -m llada.<entry>` commands share: the config directory, the device, the ckpt.

The configs ship inside the package (`llada/conf`, copied there when a wheel is built), so a
regular `pip install` runs from any directory; an editable install or a checkout reads the
repository's `conf/`, the source of truth.
"""

from __future__ import annotations

from pathlib import Path

import torch

PACKAGE = Path(__file__).resolve().parent


def config_dir() -> str:
    """`llada/conf` inside an installed wheel, else the repository's `conf/`."""
    for candidate in (PACKAGE / "conf", PACKAGE.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"llada's configs are neither in {PACKAGE / 'conf'} nor in {PACKAGE.parents[1] / 'conf'}; "
        "reinstall llada (pip install .) or run from a checkout"
    )


CONF_DIR = config_dir()


def default_device(requested: str | None = None) -> str:
    """The device asked for, else CUDA where there is one, else the CPU."""
    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def require_ckpt(ckpt: str | None) -> str:
    """The `ckpt=` of generate/eval/export, or the one-line message saying how to pass it."""
    if not ckpt:
        raise ValueError("no checkpoint given; pass ckpt=<path to a .ckpt written by llada.train>")
    return str(ckpt)
