"""SFT data: prompt/response pairs -> fixed-length rows with a prompt mask (LLaDA eq. 5).

Each row is ``prompt ids + response ids + EOS``, padded with EOS to ``block_size``. The SFT loss
never masks the prompt and scores the rest, EOS padding included (that is how the model learns to
stop), so ``attention_mask`` is 1 everywhere and ``prompt_mask`` is True exactly on the prompt.

Records come from ``.jsonl`` files, one JSON object a line, in either form:
``{"prompt": ..., "response": ...}`` or ``{"messages": [{"role": ..., "content": ...}, ...]}``.
For a conversation one assistant turn is drawn (fixed by ``seed`` and the record's position); the
prompt is every turn before it. Prompts use the tokenizer's chat template when it has one, else
the plain format of :func:`format_prompt`: ``"User: ...\\nAssistant: "``.

Rows are cached on disk like ``TextDataModule``'s blocks: saved atomically under a key of the
formatted examples, the tokenizer and the settings.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import datasets
import lightning
import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from llada.data.common import TokenizedData, quiet_datasets, require, save_atomically
from llada.data.corpus import match_files
from llada.data.resumable import train_sampler
from llada.data.tokenizer import ensure_mask_token, eos_id, text_digest, train_tokenizer

__all__ = [
    "DEFAULT_SFT_PATH",
    "PLAIN_ROLES",
    "SFTDataModule",
    "SFTExample",
    "collate_sft",
    "encode_example",
    "format_prompt",
    "read_examples",
]

SFT_CACHE_VERSION = "llada-sft-v1"
SPLITS = ("train", "validation")
# A dozen tiny original Q/A pairs and three conversations: lets `data=sft_jsonl` run as is.
DEFAULT_SFT_PATH = str(files("llada.data").joinpath("assets", "sft_tiny.jsonl"))
# Speaker names of the plain prompt format (tokenizers without a chat template).
PLAIN_ROLES: dict[str, str] = {"system": "System", "user": "User", "assistant": "Assistant"}

Message = dict[str, str]


@dataclass(frozen=True)
class SFTExample:
    """The turns before the response (the condition) and the response to learn."""

    turns: tuple[Message, ...]
    response: str


def _from_pair(record: dict, where: str, fields: dict[str, str], rng: random.Random) -> SFTExample:
    prompt, response = record.get(fields["prompt"]), record.get(fields["response"])
    if not isinstance(prompt, str) or not isinstance(response, str):
        raise ValueError(
            f"{where}: {fields['prompt']!r} and {fields['response']!r} must both be strings"
        )
    return SFTExample(({"role": "user", "content": prompt},), response)


def _from_messages(
    record: dict, where: str, fields: dict[str, str], rng: random.Random
) -> SFTExample:
    messages = record[fields["messages"]]
    valid = isinstance(messages, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    )
    if not valid:
        raise ValueError(f"{where}: {fields['messages']!r} must be a list of {{role, content}}")
    answers = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
    if not answers:
        raise ValueError(f"{where}: the conversation has no assistant turn to learn")
    chosen = rng.choice(answers)
    turns = tuple({"role": m["role"], "content": m["content"]} for m in messages[:chosen])
    return SFTExample(turns, messages[chosen]["content"])


# Record form -> parser, keyed by the field that identifies the form (first match wins).
_PARSERS: dict[str, Callable[[dict, str, dict[str, str], random.Random], SFTExample]] = {
    "messages": _from_messages,
    "prompt": _from_pair,
}


def read_examples(
    path: str,
    seed: int = 0,
    prompt_field: str = "prompt",
    response_field: str = "response",
    messages_field: str = "messages",
) -> list[SFTExample]:
    """One example per record of the ``.jsonl`` file(s) at ``path`` (file, directory or glob).

    The assistant turn drawn from a conversation depends only on ``seed`` and the record's index,
    so adding records at the end does not change the earlier examples.
    """
    fields = {"prompt": prompt_field, "response": response_field, "messages": messages_field}
    examples: list[SFTExample] = []
    for where, record in _records(path):
        form = next((k for k in _PARSERS if isinstance(record, dict) and fields[k] in record), None)
        if form is None:
            raise ValueError(
                f"{where}: expected {prompt_field!r}/{response_field!r} or "
                f"{messages_field!r}; set data.prompt_field/response_field/messages_field"
            )
        rng = random.Random(f"{seed}:{len(examples)}")
        examples.append(_PARSERS[form](record, where, fields, rng))
    return examples


def _records(path: str) -> Iterator[tuple[str, dict]]:
    """(location, record) from .jsonl file(s), else from a HF dataset (hub chat datasets, or a
    save_to_disk directory; its train split)."""
    paths = match_files(path, [".jsonl"])
    if paths:
        for file in paths:
            with file.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        yield f"{file}:{number}", json.loads(line)
        return
    from llada.data.sources import hub_rows

    for number, record in enumerate(hub_rows(path, split="train")):
        yield f"{path}[{number}]", dict(record)


def format_prompt(turns: Sequence[Message], tokenizer: PreTrainedTokenizerBase | None) -> str:
    """The prompt text the response follows; use the same at generation time.

    With a chat template: the template with the generation prompt appended. Without one, plain
    text, one line per turn and an open assistant line:
    ``"System: ...\\nUser: ...\\nAssistant: ...\\nUser: ...\\nAssistant: "``.
    """
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            list(turns), tokenize=False, add_generation_prompt=True
        )
    lines = []
    for turn in turns:
        if turn["role"] not in PLAIN_ROLES:
            known = ", ".join(PLAIN_ROLES)
            raise ValueError(f"unknown chat role {turn['role']!r}; expected one of: {known}")
        lines.append(f"{PLAIN_ROLES[turn['role']]}: {turn['content']}\n")
    return "".join(lines) + f"{PLAIN_ROLES['assistant']}: "


def encode_example(
    prompt_ids: Sequence[int], response_ids: Sequence[int], eos: int, length: int
) -> tuple[list[int], int]:
    """``prompt + response + EOS`` padded with EOS to ``length``; returns (ids, prompt length).

    Too long: the prompt loses tokens from the left (its end, next to the response, matters most).
    A response that alone does not fit keeps its first ``length`` tokens and no EOS (it does not
    end inside the window), so the response's first token is never dropped.
    """
    if length < 1:
        raise ValueError(f"block_size must be >= 1, got {length}")
    response = [*response_ids, eos][:length]
    prompt = list(prompt_ids)[max(0, len(prompt_ids) - (length - len(response))) :]
    ids = [*prompt, *response]
    return ids + [eos] * (length - len(ids)), len(prompt)


def collate_sft(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batch rows: input_ids, prompt_mask (True on the prompt), an all-ones attention mask."""
    input_ids = torch.stack([row["input_ids"] for row in rows]).long()  # (B, L)
    prompt_length = torch.stack([row["prompt_length"] for row in rows]).long()  # (B,)
    positions = torch.arange(input_ids.shape[1])  # (L,)
    return {
        "input_ids": input_ids,
        "prompt_mask": positions[None, :] < prompt_length[:, None],  # (B, L)
        "attention_mask": torch.ones_like(input_ids),  # (B, L): EOS padding is response
    }


def _split_examples(
    examples: list[SFTExample], val_fraction: float, seed: int
) -> dict[str, list[SFTExample]]:
    """Deterministic example-level split, at least one example on each side (corpus order kept)."""
    if len(examples) < 2:
        raise ValueError(f"SFT data: need at least 2 examples to split, got {len(examples)}")
    n_val = min(len(examples) - 1, max(1, round(len(examples) * val_fraction)))
    val = set(random.Random(seed).sample(range(len(examples)), n_val))
    return {
        "train": [e for i, e in enumerate(examples) if i not in val],
        "validation": [e for i, e in enumerate(examples) if i in val],
    }


def _tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """What decides the ids: the backend JSON of a fast tokenizer, else its vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.to_str()
    return json.dumps(sorted(tokenizer.get_vocab().items()))


class SFTDataModule(TokenizedData, lightning.LightningDataModule):
    """Prompt/response rows for LLaDA-style SFT; same interface as ``TextDataModule``.

    ``block_size`` is the row length (prompt + response + EOS padding). Call
    :meth:`prepare_tokenizer` with the pretrained model's tokenizer, or with nothing to train one
    on the training examples (``vocab_size``, ``tokenizer_kind``), before building the model.
    ``path=None`` reads the small example file shipped with the package (``DEFAULT_SFT_PATH``).
    """

    def __init__(
        self,
        path: str | None = None,
        block_size: int = 128,
        batch_size: int = 8,
        val_fraction: float = 0.1,
        vocab_size: int = 1024,
        tokenizer_kind: str = "wordpiece",
        num_workers: int = 0,
        cache_dir: str = "~/.cache/llada",
        seed: int = 0,
        prompt_field: str = "prompt",
        response_field: str = "response",
        messages_field: str = "messages",
    ) -> None:
        super().__init__()
        self.path = path or DEFAULT_SFT_PATH
        self.block_size = block_size
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.vocab_size = vocab_size
        self.tokenizer_kind = tokenizer_kind
        self.num_workers = num_workers
        self.cache_dir = Path(os.path.expandvars(os.path.expanduser(cache_dir)))
        self.seed = seed
        self.fields = {
            "prompt_field": prompt_field,
            "response_field": response_field,
            "messages_field": messages_field,
        }
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.train_dataset: datasets.Dataset | None = None
        self.val_dataset: datasets.Dataset | None = None
        self.cache_hit = False
        self._examples: dict[str, list[SFTExample]] | None = None

    def load_examples(self) -> dict[str, list[SFTExample]]:
        """The train/validation examples (read once)."""
        if self._examples is None:
            examples = read_examples(self.path, self.seed, **self.fields)
            self._examples = _split_examples(examples, self.val_fraction, self.seed)
        return self._examples

    def prepare_tokenizer(
        self, tokenizer: PreTrainedTokenizerBase | None = None
    ) -> PreTrainedTokenizerBase:
        """Adopt ``tokenizer`` (gets a mask token if missing) or train one on the train examples."""
        examples = self.load_examples()
        if tokenizer is not None and tokenizer is not self.tokenizer:
            ensure_mask_token(tokenizer)
            eos_id(tokenizer)  # fail now, not halfway through setup()
            self.tokenizer = tokenizer
            self.train_dataset = self.val_dataset = None
        elif self.tokenizer is None:
            texts = [
                t for e in examples["train"] for t in (format_prompt(e.turns, None), e.response)
            ]
            self.tokenizer = train_tokenizer(
                texts, self.vocab_size, self.tokenizer_kind, self.cache_dir
            )
        return self.tokenizer

    def _formatted(self, tokenizer: PreTrainedTokenizerBase) -> dict[str, list[tuple[str, str]]]:
        return {
            split: [(format_prompt(e.turns, tokenizer), e.response) for e in examples]
            for split, examples in self.load_examples().items()
        }

    def _cache_path(
        self, tokenizer: PreTrainedTokenizerBase, formatted: dict[str, list[tuple[str, str]]]
    ) -> Path:
        texts = [t for split in SPLITS for pair in formatted[split] for t in (split, *pair)]
        parts = [
            text_digest(texts),
            _tokenizer_fingerprint(tokenizer),
            str(self.block_size),
            SFT_CACHE_VERSION,
        ]
        return self.cache_dir / f"sft-{text_digest(parts)[:16]}"

    def _encode(
        self, pairs: list[tuple[str, str]], tokenizer: PreTrainedTokenizerBase
    ) -> datasets.Dataset:
        if not pairs:
            raise ValueError("SFT data: a split has no examples; lower data.val_fraction")
        eos = eos_id(tokenizer)
        prompts = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
        responses = tokenizer([r for _, r in pairs], add_special_tokens=False)["input_ids"]
        rows = [
            encode_example(p, r, eos, self.block_size)
            for p, r in zip(prompts, responses, strict=True)
        ]
        flat = pa.array(np.asarray([ids for ids, _ in rows], dtype=np.int32).reshape(-1))
        return datasets.Dataset(
            pa.table(
                {
                    "input_ids": pa.FixedSizeListArray.from_arrays(flat, self.block_size),
                    "prompt_length": pa.array([n for _, n in rows], type=pa.int32()),
                }
            )
        )

    def setup(self, stage: str | None = None) -> None:
        """Build (or load from the disk cache) the encoded train and validation rows."""
        if self.train_dataset is not None and self.val_dataset is not None:
            return
        tokenizer = self.prepare_tokenizer()
        formatted = self._formatted(tokenizer)
        target = self._cache_path(tokenizer, formatted)
        self.cache_hit = target.is_dir()
        with quiet_datasets():
            if not self.cache_hit:
                encoded = {split: self._encode(formatted[split], tokenizer) for split in SPLITS}
                save_atomically(encoded, target)
            loaded = {split: datasets.load_from_disk(str(target / split)) for split in SPLITS}
        self.train_dataset = loaded["train"].with_format("torch")
        self.val_dataset = loaded["validation"].with_format("torch")

    def _loader(self, dataset: datasets.Dataset, shuffle: bool) -> DataLoader:
        """Train (`shuffle`): resumable order; else in order. Its own generator: making an
        iterator would otherwise draw from the global RNG (the masking's)."""
        sampler = None
        if shuffle:
            sampler = train_sampler(getattr(self, "trainer", None), len(dataset), self.batch_size,
                                    self.seed, drop_last=False)  # fmt: skip
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            collate_fn=collate_sft,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded). The last batch may be smaller: the SFT loss is a per-row mean."""
        return self._loader(require(self.train_dataset, "setup()"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(require(self.val_dataset, "setup()"), shuffle=False)
