"""Checkpoint files written atomically: a crash mid-write never leaves a truncated `.ckpt`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from llada.atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, saving through `llada.atomic.atomic_write`."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        with atomic_write(path, "wb") as handle:
            torch.save(checkpoint, handle)
