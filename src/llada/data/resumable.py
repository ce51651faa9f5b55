"""A shuffling sampler that can start mid-epoch, so an interrupted run continues exactly.

The order of epoch e is a permutation drawn from (seed, e). On resume the data module starts the
sampler at the epoch and batch the restored training loop reached (Lightning restores the loop
progress before it asks for the dataloader), so no batch is repeated or skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

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
