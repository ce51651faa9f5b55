"""What the data modules share: atomic dataset caches and the tokenizer-derived accessors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import datasets
import numpy as np
import pyarrow.compute as pc
from transformers import PreTrainedTokenizerBase

from llada.atomic import atomic_directory
from llada.data.tokenizer import eos_id

T = TypeVar("T")


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence datasets' per-call progress bars (map, save) and restore the caller's setting."""
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def flat_tokens(dataset: datasets.Dataset) -> np.ndarray:
    """All token ids of a list-valued ``input_ids`` column, in order, as one array (N,)."""
    return pc.list_flatten(dataset.data.column("input_ids")).to_numpy()


def save_atomically(splits: dict[str, datasets.Dataset], target: Path) -> None:
    """save_to_disk into a temp dir, then rename: readers see all splits or nothing."""
    with atomic_directory(target) as tmp:
        for name, dataset in splits.items():
            dataset.save_to_disk(str(tmp / name))


def require(value: T | None, step: str) -> T:
    """Unwrap a value that only exists after ``step`` ran, with a message that says so."""
    if value is None:
        raise RuntimeError(f"TextDataModule: call {step} first")
    return value


class TokenizedData:
    """Mixin for data modules with `tokenizer`, `train_dataset` and `val_dataset` attributes."""

    tokenizer: PreTrainedTokenizerBase | None
    train_dataset: datasets.Dataset | None
    val_dataset: datasets.Dataset | None

    def unigram_perplexity(self) -> float:
        """Validation perplexity of a unigram model fit on the train rows (add-one smoothing).

        The floor a language model must beat: it knows token frequencies and nothing else.
        """
        train = flat_tokens(require(self.train_dataset, "setup()"))  # (N_train,)
        val = flat_tokens(require(self.val_dataset, "setup()"))  # (N_val,)
        vocab = self.vocab_size_actual
        counts = np.bincount(train, minlength=vocab).astype(np.float64)  # (V,)
        log_probs = np.log(counts + 1.0) - math.log(len(train) + vocab)  # (V,)
        return float(math.exp(-log_probs[val].mean()))

    @property
    def _tok(self) -> PreTrainedTokenizerBase:
        return require(self.tokenizer, "prepare_tokenizer()")

    @property
    def vocab_size_actual(self) -> int:
        """Embedding rows the model needs (includes added tokens, unlike ``tok.vocab_size``)."""
        return len(self._tok)

    @property
    def mask_token_id(self) -> int:
        return int(self._tok.mask_token_id)

    @property
    def pad_token_id(self) -> int | None:
        return self._tok.pad_token_id

    @property
    def eos_token_id(self) -> int:
        return eos_id(self._tok)
