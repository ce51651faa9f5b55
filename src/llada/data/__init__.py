"""Text corpora, tokenizers and the data modules (packed pretraining blocks, SFT pairs).

The data modules load on first use (PEP 562): they bring Lightning, which generation and the
tokenizer alone must not pay for.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

LAZY = {"TextDataModule": "llada.data.datamodule", "SFTDataModule": "llada.data.sft"}
__all__ = sorted(LAZY)


def __getattr__(name: str) -> Any:
    if name in LAZY:
        return getattr(import_module(LAZY[name]), name)
    raise AttributeError(f"module 'llada.data' has no attribute {name!r}")
