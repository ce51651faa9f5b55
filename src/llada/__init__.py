"""llada: masked diffusion language models (LLaDA and family) with Lightning and Hydra."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["DiffusionLM", "__version__"]

if TYPE_CHECKING:
    from llada.module import DiffusionLM


def __getattr__(name: str) -> object:
    """Import the LightningModule lazily: `import llada.diffusion` stays free of Lightning."""
    if name == "DiffusionLM":
        from llada.module import DiffusionLM

        return DiffusionLM
    raise AttributeError(f"module 'llada' has no attribute {name!r}")
