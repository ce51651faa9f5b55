"""Test-only callbacks loaded by the CLI through `+callbacks.<name>._target_=probes.<Class>`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import lightning as L
import torch


class RecordRankData(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.batches: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        ids = batch["input_ids"].cpu().numpy().tobytes()
        self.batches.append(hashlib.sha256(ids).hexdigest())

    def on_train_end(self, trainer, pl_module) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to(torch.float64).cpu().numpy().tobytes())
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {"batches": self.batches, "weights": digest.hexdigest()}
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class KillAtStep(L.Callback):
    """SIGKILL this very process once training reaches `step`: a real crash, no cleanup runs."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
