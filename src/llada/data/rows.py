"""Fixed-width rows with a prompt mask, for post-training data (prompts to roll out, preferences).

A row is a filled text whose `prompt_mask` marks the given tokens; the others are the completion
(a suffix after a prompt, or the blanks of a puzzle). Rows are padded on the right to one width
(`attention_mask` 0, `prompt_mask` 1 there: never generated nor scored). Post-training starts from
a trained model, so the tokenizer is always the model's (`model.init_from`); none is trained here.
"""

from __future__ import annotations

import random
from abc import abstractmethod
from typing import Any

import datasets
import lightning
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from llada.data.common import TokenizedData, require
from llada.data.resumable import train_sampler
from llada.data.tokenizer import ensure_mask_token, eos_id
from llada.generation import MASK_SLOT

Row = dict[str, list[int]]  # input_ids, attention_mask, prompt_mask
SPLITS = ("train", "validation")


def template_row(tokenizer: PreTrainedTokenizerBase, template: str, filled: str) -> Row:
    """A row from a template with `[MASK]xN` slots and its filled text (same token count)."""
    mask_id = int(tokenizer.mask_token_id)
    template_ids: list[int] = []
    for index, piece in enumerate(MASK_SLOT.split(template)):  # text, count, text, ...
        if index % 2:
            template_ids.extend([mask_id] * int(piece or 1))
        elif piece.strip():
            template_ids.extend(tokenizer.encode(piece.strip(), add_special_tokens=False))
    ids = tokenizer.encode(filled, add_special_tokens=False)
    if len(ids) != len(template_ids):
        raise ValueError(
            f"template {template!r} has {len(template_ids)} tokens but its filled text {filled!r} "
            f"has {len(ids)}; the slots must hold the answer's token count"
        )
    given = [int(t != mask_id) for t in template_ids]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "prompt_mask": given}


def answer_row(tokenizer: PreTrainedTokenizerBase, prompt: str, answer: str) -> Row:
    """prompt ids + answer ids + EOS; the prompt given, the answer and its EOS the completion."""
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    answer_ids = [*tokenizer.encode(answer, add_special_tokens=False), eos_id(tokenizer)]
    ids = [*prompt_ids, *answer_ids]
    given = [1] * len(prompt_ids) + [0] * len(answer_ids)
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "prompt_mask": given}


def padded(row: Row, width: int, pad_id: int, prefix: str = "") -> Row:
    """`row` right-padded to `width` (keys prefixed, e.g. "chosen_")."""
    extra = width - len(row["input_ids"])
    fills = {"input_ids": pad_id, "attention_mask": 0, "prompt_mask": 1}
    return {prefix + key: values + [fills[key]] * extra for key, values in row.items()}


def collate_rows(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack equal-width rows: every key (B, L) long."""
    return {key: torch.stack([torch.as_tensor(row[key]) for row in rows]) for key in rows[0]}


class RowsDataModule(TokenizedData, lightning.LightningDataModule):
    """Train/validation rows from `examples()`, encoded with the model's tokenizer."""

    def __init__(
        self,
        block_size: int | None = None,
        batch_size: int = 8,
        val_size: int = 16,
        max_rows: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.block_size, self.batch_size = block_size, batch_size
        self.val_size, self.max_rows = val_size, max_rows
        self.seed, self.num_workers = seed, num_workers
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.train_dataset: datasets.Dataset | None = None
        self.val_dataset: datasets.Dataset | None = None

    @abstractmethod
    def examples(self) -> list[Any]:
        """The examples (read and checked; bad input fails here, before any work)."""

    @abstractmethod
    def encode(self, examples: list[Any], tokenizer: PreTrainedTokenizerBase) -> list[Row]:
        """Equal-width rows of `examples`."""

    def prepare_tokenizer(
        self, tokenizer: PreTrainedTokenizerBase | None = None
    ) -> PreTrainedTokenizerBase:
        """Adopt the model's tokenizer; reading the examples now makes bad data fail early."""
        if tokenizer is None and self.tokenizer is None:
            raise ValueError(
                f"{type(self).__name__} post-trains a model and uses its tokenizer: set "
                "model.init_from=<checkpoint>"
            )
        if tokenizer is not None and tokenizer is not self.tokenizer:
            ensure_mask_token(tokenizer)
            self.tokenizer, self.train_dataset, self.val_dataset = tokenizer, None, None
        self.examples()
        return require(self.tokenizer, "prepare_tokenizer()")

    def split(self) -> dict[str, list[Any]]:
        """Shuffled by seed; the first `val_size` are validation (never trained on)."""
        examples = self.examples()
        order = random.Random(self.seed).sample(examples, len(examples))
        if len(order) <= self.val_size:
            raise ValueError(
                f"{type(self).__name__}: {len(order)} examples leave none to train on after "
                f"data.val_size={self.val_size}; lower data.val_size"
            )
        train = order[self.val_size :]
        return {"train": train[: self.max_rows] if self.max_rows else train,
                "validation": order[: self.val_size]}  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None and self.val_dataset is not None:
            return
        tokenizer = require(self.tokenizer, "prepare_tokenizer()")
        built = {}
        for name, examples in self.split().items():
            rows = self.encode(examples, tokenizer)
            width = len(rows[0][next(iter(rows[0]))])
            if self.block_size is not None and width > self.block_size:
                raise ValueError(
                    f"{type(self).__name__}: rows are {width} tokens, more than data.block_size="
                    f"{self.block_size} (the model's context); raise data.block_size"
                )
            built[name] = datasets.Dataset.from_list(rows).with_format("torch")
        self.train_dataset, self.val_dataset = built["train"], built["validation"]

    def _loader(self, dataset: datasets.Dataset, shuffle: bool) -> DataLoader:
        """Train (`shuffle`): resumable order, full batches (GRPO groups and DPO pairs); else in
        order. Its own generator: making an iterator would otherwise draw from the global RNG."""
        sampler = None
        if shuffle:
            sampler = train_sampler(getattr(self, "trainer", None), len(dataset), self.batch_size,
                                    self.seed)  # fmt: skip
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            collate_fn=collate_rows,
            drop_last=shuffle,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(require(self.train_dataset, "setup()"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(require(self.val_dataset, "setup()"), shuffle=False)

    def unigram_perplexity(self) -> float:
        """Not meaningful for prompt rows (padding dominates): NaN, so no one compares to it."""
        return float("nan")
