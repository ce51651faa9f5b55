"""Lightning data module: documents -> tokenizer -> packed fixed-length blocks, cached on disk.

Masked diffusion trains on full blocks with no padding, so documents are concatenated (an EOS after
each) and cut into ``block_size`` pieces. Tokenizing and packing run once; later runs memory-map the
cached arrow files.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import datasets
import lightning
import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedTokenizerFast

from llada.data.common import (
    TokenizedData,
    flat_tokens,
    quiet_datasets,
    require,
    save_atomically,
)
from llada.data.resumable import train_sampler
from llada.data.tokenizer import ensure_mask_token, eos_id, text_digest, train_tokenizer

__all__ = ["DATA_CACHE_VERSION", "TextDataModule", "collate_blocks", "split_documents"]

# Bump when tokenisation or packing changes, so stale cached datasets are not reused.
DATA_CACHE_VERSION = "llada-data-v1"
SPLITS = ("train", "validation")


def split_documents(
    documents: list[str], val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Deterministic document-level split; at least one document on each side.

    Whole documents (not blocks) go to validation so no text is shared between the splits. Each
    split keeps the corpus order, which keeps neighbouring sections of a topic together.
    """
    if len(documents) < 2:
        raise ValueError(f"need at least 2 documents to split, got {len(documents)}")
    n_val = min(len(documents) - 1, max(1, round(len(documents) * val_fraction)))
    val_indices = set(random.Random(seed).sample(range(len(documents)), n_val))
    train = [doc for i, doc in enumerate(documents) if i not in val_indices]
    val = [doc for i, doc in enumerate(documents) if i in val_indices]
    return train, val


def collate_blocks(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack rows into a batch. Packed rows are all text (mask of ones); padded rows carry a mask."""
    input_ids = torch.stack([row["input_ids"] for row in rows]).long()  # (B, L)
    if "attention_mask" in rows[0]:
        attention = torch.stack([row["attention_mask"] for row in rows]).long()  # (B, L)
    else:
        attention = torch.ones_like(input_ids)
    return {"input_ids": input_ids, "attention_mask": attention}


def _tokenize(
    documents: list[str],
    tokenizer: PreTrainedTokenizerFast,
    eos: int,
    fingerprint: str,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """One row per document: its token ids (no special tokens) followed by ``eos``."""

    def encode(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        return {"input_ids": [[*row, eos] for row in ids]}

    raw = datasets.Dataset.from_dict({"text": documents})
    # An explicit fingerprint spares datasets from hashing the tokenizer inside the closure.
    return raw.map(
        encode,
        batched=True,
        remove_columns=["text"],
        new_fingerprint=fingerprint,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
    )


def _pack(tokens: datasets.Dataset, block_size: int, split: str) -> datasets.Dataset:
    """Concatenate every document's ids and cut into full ``block_size`` rows (tail dropped)."""
    flat = flat_tokens(tokens)  # (N,)
    n_blocks = len(flat) // block_size
    if n_blocks == 0:
        raise ValueError(
            f"{split} split has {len(flat)} tokens, fewer than one block of block_size={block_size}"
        )
    kept = pa.array(flat[: n_blocks * block_size].astype(np.int32))  # (n_blocks * L,)
    blocks = pa.FixedSizeListArray.from_arrays(kept, block_size)  # (n_blocks, L)
    return datasets.Dataset(pa.table({"input_ids": blocks}))


def _pad_examples(
    tokens: datasets.Dataset, block_size: int, split: str, pad_id: int
) -> datasets.Dataset:
    """One row per document: its ids (EOS included) cut to ``block_size`` and right-padded.

    For corpora of independent short examples, where packing would let one example see another.
    Padding is never masked nor scored (attention_mask 0).
    """
    if len(tokens) == 0:
        raise ValueError(f"{split} split has no documents")
    rows = [ids[:block_size] for ids in tokens["input_ids"]]
    input_ids = np.full((len(rows), block_size), pad_id, dtype=np.int32)  # (N, L)
    attention = np.zeros((len(rows), block_size), dtype=np.int8)  # (N, L)
    for index, ids in enumerate(rows):
        input_ids[index, : len(ids)] = ids
        attention[index, : len(ids)] = 1
    table = {
        "input_ids": pa.FixedSizeListArray.from_arrays(pa.array(input_ids.ravel()), block_size),
        "attention_mask": pa.FixedSizeListArray.from_arrays(
            pa.array(attention.ravel()), block_size
        ),
    }
    return datasets.Dataset(pa.table(table))


class TextDataModule(TokenizedData, lightning.LightningDataModule):
    """Packed-block text data for masked diffusion LMs, from any corpus callable.

    ``corpus`` returns the documents (e.g. a Hydra partial of ``llada.data.corpus.pydoc_topics``).
    Call :meth:`prepare_tokenizer` before building the model to learn the vocabulary size.
    """

    def __init__(
        self,
        corpus: Callable[[], list[str]],
        block_size: int = 128,
        batch_size: int = 32,
        val_fraction: float = 0.05,
        vocab_size: int = 4096,
        tokenizer_kind: str = "wordpiece",
        num_workers: int = 0,
        cache_dir: str = "~/.cache/llada",
        seed: int = 0,
        path: str | None = None,
        pretrained_tokenizer: str | None = None,
        num_proc: int | None = None,
        packing: bool = True,
    ) -> None:
        super().__init__()
        self.packing = packing  # False: one padded row per document instead of packed blocks
        self.pretrained_tokenizer = pretrained_tokenizer  # hub name or directory; None = train one
        self.num_proc = num_proc  # processes for tokenization (Dataset.map)
        self.corpus = corpus
        self.path = path  # `data.path`: handed to corpus loaders that read local files
        self.block_size = block_size
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.vocab_size = vocab_size
        self.tokenizer_kind = tokenizer_kind
        self.num_workers = num_workers
        self.cache_dir = Path(os.path.expandvars(os.path.expanduser(cache_dir)))
        self.seed = seed
        self.tokenizer: PreTrainedTokenizerFast | None = None
        self.train_dataset: datasets.Dataset | None = None
        self.val_dataset: datasets.Dataset | None = None
        self.cache_hit = False
        self._documents: dict[str, list[str]] | None = None
        self._corpus_digest = ""

    def _load_documents(self) -> dict[str, list[str]]:
        if self._documents is None:
            documents = self.corpus() if self.path is None else self.corpus(path=self.path)
            self._corpus_digest = text_digest(documents)
            train, val = split_documents(documents, self.val_fraction, self.seed)
            self._documents = {"train": train, "validation": val}
        return self._documents

    def prepare_tokenizer(
        self, tokenizer: PreTrainedTokenizerFast | None = None
    ) -> PreTrainedTokenizerFast:
        """Train (cached) a tokenizer on the train split, or adopt ``tokenizer``; idempotent.

        A given tokenizer (pretrained, or restored from a checkpoint) gets a ``[MASK]`` token if
        it lacks one and must have an EOS or SEP token to separate documents.
        """
        documents = self._load_documents()
        if tokenizer is not None and tokenizer is not self.tokenizer:
            ensure_mask_token(tokenizer)
            eos_id(tokenizer)  # fail now, not halfway through setup()
            self.tokenizer = tokenizer
            self.train_dataset = self.val_dataset = None
        elif self.tokenizer is None and self.pretrained_tokenizer:
            from llada.hub import load_tokenizer

            return self.prepare_tokenizer(load_tokenizer(self.pretrained_tokenizer))
        elif self.tokenizer is None:
            self.tokenizer = train_tokenizer(
                documents["train"], self.vocab_size, self.tokenizer_kind, self.cache_dir
            )
        return self.tokenizer

    def _cache_path(self, tokenizer: PreTrainedTokenizerFast) -> Path:
        parts = [
            self._corpus_digest,
            tokenizer.backend_tokenizer.to_str(),
            str(self.block_size),
            repr(float(self.val_fraction)),
            str(self.seed),
            "packed" if self.packing else "padded",
            DATA_CACHE_VERSION,
        ]
        return self.cache_dir / f"data-{text_digest(parts)[:16]}"

    def setup(self, stage: str | None = None) -> None:
        """Build (or load from the disk cache) the packed train and validation datasets."""
        if self.train_dataset is not None and self.val_dataset is not None:
            return
        tokenizer = self.prepare_tokenizer()
        target = self._cache_path(tokenizer)
        self.cache_hit = target.is_dir()
        with quiet_datasets():
            if not self.cache_hit:
                documents = self._load_documents()
                eos = eos_id(tokenizer)
                tokenized = {
                    split: _tokenize(
                        documents[split], tokenizer, eos, f"{target.name}-{split}", self.num_proc
                    )
                    for split in SPLITS
                }
                pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
                packed = {
                    split: _pack(tokens, self.block_size, split)
                    if self.packing
                    else _pad_examples(tokens, self.block_size, split, pad)
                    for split, tokens in tokenized.items()
                }
                save_atomically(packed, target)
            loaded = {split: datasets.load_from_disk(str(target / split)) for split in SPLITS}
        self.train_dataset = loaded["train"].with_format("torch")
        self.val_dataset = loaded["validation"].with_format("torch")

    def _loader(self, dataset: datasets.Dataset, sampler: Sampler[int] | None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=sampler is not None,
            # Its own generator: creating an iterator would otherwise draw from the global RNG,
            # which the masking uses, and a resumed run would drift from an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            collate_fn=collate_blocks,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded), full batches only: every step sees ``batch_size`` blocks."""
        train = require(self.train_dataset, "setup()")
        if len(train) < self.batch_size:
            raise ValueError(
                f"train split has {len(train)} blocks, fewer than batch_size={self.batch_size}"
            )
        sampler = train_sampler(
            getattr(self, "trainer", None), len(train), self.batch_size, self.seed
        )
        return self._loader(train, sampler)

    def val_dataloader(self) -> DataLoader:
        """In order, every validation block (last batch may be smaller)."""
        return self._loader(require(self.val_dataset, "setup()"), sampler=None)
