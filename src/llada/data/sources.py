"""Corpus loaders for data the user brings: local files (.txt, .jsonl, .parquet) and HF datasets.

Both return a plain ``list[str]`` like every loader in :mod:`llada.data.corpus`, so
``TextDataModule`` stays generic: it splits the documents into train/validation itself (sources
rarely agree on split names, and a held-out split the model never trained on is all it needs).
``TextDataModule`` passes ``data.path`` to the loader as ``path=``; for a hub dataset that is the
dataset name, which is also what ``datasets.load_dataset`` calls its first argument.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

import datasets
import pyarrow.parquet as pq

from llada.data.corpus import group_chunks, match_files, paragraphs

__all__ = ["READERS", "hub_dataset", "local_files"]

# A reader turns one file into its chunks of text: paragraphs for .txt, one per record otherwise.
Reader = Callable[[Path, str], list[str]]

_TRUE = ("1", "true", "yes", "on")
# Files datasets.save_to_disk writes: a Dataset (state.json) or a DatasetDict (dataset_dict.json).
_SAVED_MARKERS = ("state.json", "dataset_dict.json")


def _read_txt(file: Path, text_field: str) -> list[str]:
    """Paragraphs (blank-line separated); ``text_field`` does not apply to plain text."""
    return paragraphs(file.read_text(encoding="utf-8"))


def _field_text(value: object, field: str, where: str) -> str | None:
    """A record's text, None for a missing value; anything but a string is a user error."""
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{where}: field {field!r} holds {type(value).__name__}, not text")


def _read_jsonl(file: Path, text_field: str) -> list[str]:
    """One chunk per JSON object (one per line), taken from its ``text_field``."""
    texts: list[str] = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{file}:{number}"
            record = json.loads(line)
            if not isinstance(record, dict) or text_field not in record:
                keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise ValueError(
                    f"{where} has no field {text_field!r} (has {keys}); "
                    "set data.corpus.text_field=<field>"
                )
            texts.append(_field_text(record[text_field], text_field, where) or "")
    return texts


def _read_parquet(file: Path, text_field: str) -> list[str]:
    """One chunk per row of the ``text_field`` column (only that column is read)."""
    columns = pq.read_schema(file).names
    if text_field not in columns:
        raise ValueError(
            f"{file} has no column {text_field!r} (has {columns}); "
            "set data.corpus.text_field=<column>"
        )
    values = pq.read_table(file, columns=[text_field]).column(text_field).to_pylist()
    return [_field_text(value, text_field, str(file)) or "" for value in values]


READERS: dict[str, Reader] = {
    ".txt": _read_txt,
    ".jsonl": _read_jsonl,
    ".parquet": _read_parquet,
}


def local_files(path: str | None = None, text_field: str = "text", min_chars: int = 0) -> list[str]:
    """Documents from local files: a file, a directory (recursive) or a glob; format by suffix.

    ``.txt``: one document per paragraph, like :func:`llada.data.corpus.text_files`. ``.jsonl``: one
    per record, its ``text_field``. ``.parquet``: one per row of the ``text_field`` column.
    Consecutive chunks of one file are merged until each has ``min_chars`` characters; blank ones
    are dropped. A directory contributes only files with a known suffix (see ``READERS``).
    """
    known = ", ".join(sorted(READERS))
    if path is None:
        raise ValueError(
            f"local_files: no path given; set data.path=<file, directory or glob of {known}>"
        )
    files = match_files(path, READERS)
    if not files:
        raise FileNotFoundError(f"local_files: no {known} file matches {path!r}")
    documents: list[str] = []
    for file in files:
        reader = READERS.get(file.suffix)
        if reader is None:
            raise ValueError(
                f"local_files: cannot read {file} (suffix {file.suffix!r}); use one of {known} "
                "or narrow the glob in data.path"
            )
        chunks = (chunk for chunk in reader(file, text_field) if chunk.strip())
        documents.extend(group_chunks(chunks, min_chars))
    return documents


def _offline() -> bool:
    """Whether the user switched the hub off (read per call: tests and notebooks set it late)."""
    flags = (os.environ.get(name, "") for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
    return any(flag.strip().lower() in _TRUE for flag in flags)


def _from_disk(directory: Path, split: str) -> datasets.Dataset:
    """A directory written by ``save_to_disk``: a Dataset as is, or one split of a DatasetDict."""
    loaded = datasets.load_from_disk(str(directory))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(
                f"{directory} has no split {split!r} (has {sorted(loaded)}); "
                "set data.corpus.split=<split>"
            )
        return loaded[split]
    return loaded


def _load(
    path: str, config: str | None, split: str, streaming: bool, data_files: str | list[str] | None
) -> datasets.Dataset | datasets.IterableDataset:
    """``load_dataset`` with a one-line, fix-naming error when the hub cannot be reached.

    Offline, datasets answers at once from its cache or fails (no network attempt), so a dataset
    fetched earlier still works and an unknown one fails fast.
    """
    try:
        return datasets.load_dataset(
            path, config, split=split, streaming=streaming, data_files=data_files
        )
    except (ConnectionError, datasets.exceptions.DatasetNotFoundError) as error:
        state = "the HF hub is offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE set)"
        if not _offline():
            state = f"it could not be loaded from the HF hub ({type(error).__name__})"
        raise ConnectionError(
            f"hub_dataset: {path!r} is not a local directory and {state}; go online once and "
            f"run datasets.load_dataset({path!r}).save_to_disk(DIR), then pass data.path=DIR"
        ) from None


def _documents(
    texts: Iterable[object], field: str, max_documents: int | None, where: str
) -> list[str]:
    """Non-blank texts in order, at most ``max_documents`` of them (None: all)."""
    kept = (
        text
        for text in (_field_text(value, field, where) for value in texts)
        if text is not None and text.strip()
    )
    return list(islice(kept, max_documents))


def hub_dataset(
    path: str | None = None,
    config: str | None = None,
    split: str = "train",
    text_field: str = "text",
    streaming: bool = False,
    max_documents: int | None = None,
    data_files: str | list[str] | None = None,
) -> list[str]:
    """Documents from a Hugging Face dataset: a hub name, a ``save_to_disk`` directory, or a
    packaged builder (``json``, ``parquet``, ``text``, ...) with ``data_files``.

    ``path`` is ``data.path``; ``config`` is the dataset configuration (``load_dataset``'s
    ``name``). ``streaming`` reads rows lazily and needs ``max_documents``: only the first N
    non-blank documents are fetched, which is how to use a slice of a corpus too big to download.
    A ``save_to_disk`` directory is memory-mapped, so ``streaming`` does not apply to it.
    """
    if path is None:
        raise ValueError(
            "hub_dataset: no dataset given; set data.path=<hub name (e.g. Salesforce/wikitext) "
            "or a directory written by save_to_disk>"
        )
    if max_documents is not None and max_documents < 1:
        raise ValueError(f"hub_dataset: max_documents must be >= 1 or null, got {max_documents}")
    if streaming and max_documents is None:
        raise ValueError(
            "hub_dataset: streaming=true reads the first N documents; set "
            "data.corpus.max_documents=<N>"
        )
    rows = hub_rows(path, config, split, streaming, data_files)
    texts = _column(rows, text_field, path)
    return _documents(texts, text_field, max_documents, f"hub_dataset {path!r}")


def hub_rows(
    path: str,
    config: str | None = None,
    split: str = "train",
    streaming: bool = False,
    data_files: str | list[str] | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """The rows of a ``save_to_disk`` directory or of ``load_dataset(path, ...)`` (one split)."""
    directory = Path(path).expanduser()
    if directory.is_dir() and any((directory / marker).is_file() for marker in _SAVED_MARKERS):
        return _from_disk(directory, split)
    return _load(
        str(directory) if directory.is_dir() else path, config, split, streaming, data_files
    )


def _missing_column(path: str, field: str, columns: Iterable[str]) -> ValueError:
    return ValueError(
        f"hub_dataset: {path!r} has no column {field!r} (has {sorted(columns)}); "
        "set data.corpus.text_field=<column>"
    )


def _column(
    rows: datasets.Dataset | datasets.IterableDataset, field: str, path: str
) -> Iterator[object]:
    """The values of one column, lazily (a streamed dataset may not know its columns up front)."""
    if rows.column_names is not None and field not in rows.column_names:
        raise _missing_column(path, field, rows.column_names)
    if isinstance(rows, datasets.Dataset):
        for batch in rows.select_columns([field]).iter(batch_size=1000):
            yield from batch[field]
        return
    for row in rows:
        if field not in row:
            raise _missing_column(path, field, row)
        yield row[field]
