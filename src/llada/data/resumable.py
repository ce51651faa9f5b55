"""A shuffling sampler that can start mid-epoch, so an interrupted run continues exactly.

The order of epoch e is a permutation drawn from (seed, e). On resume the data module starts the
sampler at the epoch and batch the restored training loop reached (Lightning restores the loop
progress before it asks for the dataloader), so no batch is repeated or skipped. A DataLoader
with `shuffle=True` would instead draw every epoch's order from one generator seeded when the
loader is made: a resumed run would replay epoch 0's order in the epoch it resumes in.
Every data module's train loader takes its sampler from `train_sampler`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler


class ResumableShuffleSampler(Sampler[int]):
    """Random order per epoch from (seed, epoch); the first epoch may start at `start_index`."""

    def __init__(self, length: int, seed: int, epoch: int = 0, start_index: int = 0) -> None:
        self.length, self.seed = length, seed
        self.epoch, self.start_index = epoch, start_index

    def __len__(self) -> int:
        """A whole epoch, also while the first one starts late: Lightning reads the length once
        and uses it for every epoch (a shorter one would end every later epoch early)."""
        return self.length

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator)[self.start_index :]
        self.epoch, self.start_index = self.epoch + 1, 0
        yield from order.tolist()


def resume_point(trainer: Any | None, batches_per_epoch: int) -> tuple[int, int]:
    """(epoch, batches already trained in it), from the optimizer steps the trainer has taken.

    Lightning restores the step count from the checkpoint before it asks for the train
    dataloader, so a resumed run continues with the very next batch (checkpoints are written
    at optimizer-step boundaries, so no accumulation is half done).
    """
    if trainer is None or trainer.global_step == 0 or batches_per_epoch == 0:
        return 0, 0
    consumed = trainer.global_step * trainer.accumulate_grad_batches
    return divmod(consumed, batches_per_epoch)


def train_sampler(
    trainer: Any | None, length: int, batch_size: int, seed: int, drop_last: bool = True
) -> ResumableShuffleSampler:
    """The shuffling sampler of a train loader over `length` rows, started where `trainer` is."""
    batches = length // batch_size if drop_last else math.ceil(length / batch_size)
    epoch, start_batch = resume_point(trainer, batches)
    return ResumableShuffleSampler(length, seed, epoch=epoch, start_index=start_batch * batch_size)
