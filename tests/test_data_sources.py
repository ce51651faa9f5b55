"""Local-file and Hugging Face dataset corpus loaders, and their data configs."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra.utils import instantiate

from conftest import compose_config
from llada.data import TextDataModule
from llada.data.sources import READERS, hub_dataset, local_files


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.fixture
def saved_dataset(tmp_path: Path) -> Path:
    rows = {"text": ["alpha beta", "", "gamma delta", "epsilon"], "n": [1, 2, 3, 4]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved"


def compose_data(overrides: list[str]):
    return compose_config("train", overrides=["run_dir=/tmp/x", *overrides])


# ----------------------------------------------------------------------------- local files


def test_local_files_reads_each_format_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("First paragraph.\n\nSecond paragraph.\n")
    write_jsonl(tmp_path / "b.jsonl", [{"text": "from json", "id": 1}, {"text": "  "}])
    pq.write_table(pa.table({"text": ["row one", None, "row two"]}), tmp_path / "c.parquet")
    (tmp_path / "notes.md").write_text("skipped: not a known suffix")

    expected = ["First paragraph.", "Second paragraph.", "from json", "row one", "row two"]
    assert local_files(str(tmp_path)) == expected  # blank and null texts dropped, sorted files
    assert local_files(str(tmp_path / "b.jsonl")) == ["from json"]
    assert local_files(str(tmp_path / "*.parquet")) == ["row one", "row two"]
    assert local_files(str(tmp_path / "a.txt"), min_chars=100) == [
        "First paragraph.\n\nSecond paragraph."
    ]
    assert set(READERS) == {".txt", ".jsonl", ".parquet"}


def test_local_files_custom_text_field(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"body": "one"}, {"body": "two"}])
    pq.write_table(pa.table({"body": ["three"]}), tmp_path / "e.parquet")
    assert local_files(str(tmp_path), text_field="body") == ["one", "two", "three"]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("x.jsonl", '{"body": "a"}\n', r"x\.jsonl:1 has no field 'text'.*text_field"),
        ("x.jsonl", '{"text": 3}\n', "holds int, not text"),
        ("x.md", "hello", r"suffix '\.md'.*\.jsonl"),
    ],
)
def test_local_files_errors_are_one_line(
    tmp_path: Path, name: str, content: str, match: str
) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises((ValueError, TypeError), match=match) as info:
        local_files(str(tmp_path / name))
    one_line(info)


def test_local_files_missing_parquet_column_and_paths(tmp_path: Path) -> None:
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "f.parquet")
    with pytest.raises(ValueError, match=r"no column 'text' \(has \['body'\]\)") as info:
        local_files(str(tmp_path / "f.parquet"))
    one_line(info)
    with pytest.raises(FileNotFoundError, match="nothing-here") as info:
        local_files(str(tmp_path / "nothing-here"))
    one_line(info)
    with pytest.raises(ValueError, match=r"data\.path=") as info:
        local_files(None)
    one_line(info)


def test_local_files_feeds_text_datamodule(tmp_path: Path) -> None:
    records = [{"text": f"document number {i} says hello to the world."} for i in range(40)]
    path = write_jsonl(tmp_path / "docs.jsonl", records)
    datamodule = TextDataModule(
        partial(local_files),
        path=str(path),
        block_size=16,
        batch_size=4,
        vocab_size=128,
        val_fraction=0.1,
        cache_dir=str(tmp_path / "cache"),
    )
    tokenizer = datamodule.prepare_tokenizer()
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["input_ids"].shape == (4, 16)
    assert "hello" in tokenizer.decode(batch["input_ids"][0])


# ----------------------------------------------------------------------------- hub datasets


def test_hub_name_offline_fails_fast_with_one_line() -> None:
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="offline") as info:
        hub_dataset("llada-tests/no-such-dataset")
    assert time.perf_counter() - start < 5.0
    message = one_line(info)
    assert "llada-tests/no-such-dataset" in message
    assert "save_to_disk" in message and "data.path=" in message


def test_hub_save_to_disk_directory_loads(saved_dataset: Path) -> None:
    assert hub_dataset(str(saved_dataset)) == ["alpha beta", "gamma delta", "epsilon"]
    assert hub_dataset(str(saved_dataset), max_documents=2) == ["alpha beta", "gamma delta"]
    with pytest.raises(ValueError, match=r"no column 'body'.*text_field") as info:
        hub_dataset(str(saved_dataset), text_field="body")
    one_line(info)


def test_hub_dataset_dict_directory_picks_the_split(tmp_path: Path) -> None:
    train = datasets.Dataset.from_dict({"text": ["t1", "t2"]})
    test = datasets.Dataset.from_dict({"text": ["held out"]})
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "dd"))

    assert hub_dataset(str(tmp_path / "dd")) == ["t1", "t2"]
    assert hub_dataset(str(tmp_path / "dd"), split="test") == ["held out"]
    with pytest.raises(ValueError, match=r"no split 'validation' \(has \['test', 'train'\]\)"):
        hub_dataset(str(tmp_path / "dd"), split="validation")


def test_hub_streaming_takes_the_first_documents(tmp_path: Path) -> None:
    records = [{"body": f"doc {i}"} if i != 1 else {"body": ""} for i in range(50)]
    path = write_jsonl(tmp_path / "stream.jsonl", records)
    streamed = hub_dataset(
        "json", data_files=str(path), text_field="body", streaming=True, max_documents=3
    )
    assert streamed == ["doc 0", "doc 2", "doc 3"]  # the blank one is not a document
    with pytest.raises(ValueError, match="max_documents") as info:
        hub_dataset("json", data_files=str(path), streaming=True)
    one_line(info)
    with pytest.raises(ValueError, match="no column 'text'"):
        hub_dataset("json", data_files=str(path), streaming=True, max_documents=2)


def test_hub_packaged_builder_without_streaming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    (tmp_path / "data").mkdir()
    path = write_jsonl(tmp_path / "data" / "d.jsonl", [{"text": f"line {i}"} for i in range(5)])
    assert hub_dataset("json", data_files=str(path), max_documents=4) == [
        f"line {i}" for i in range(4)
    ]
    # A plain local directory of data files (not save_to_disk) goes through load_dataset too.
    assert hub_dataset(str(tmp_path / "data"), max_documents=2) == ["line 0", "line 1"]


# ----------------------------------------------------------------------------- configs


def test_local_files_config_composes_and_loads(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"body": f"sentence {i} of the file."} for i in range(30)])
    cfg = compose_data(
        [
            "data=local_files",
            f"data.path={tmp_path}",
            "data.corpus.text_field=body",
            "data.vocab_size=64",
            "data.block_size=8",
            "data.batch_size=2",
        ]
    )
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, TextDataModule)
    datamodule.prepare_tokenizer()
    datamodule.setup()
    assert len(datamodule.train_dataset) >= 2


def test_hub_config_composes_and_loads_a_saved_dataset(saved_dataset: Path) -> None:
    cfg = compose_data(["data=hub", f"data.path={saved_dataset}", "data.corpus.max_documents=2"])
    datamodule = instantiate(cfg.data)
    assert datamodule.corpus(path=datamodule.path) == ["alpha beta", "gamma delta"]


@pytest.mark.parametrize("option", ["local_files", "hub"])
def test_configs_instantiate_without_a_path(option: str) -> None:
    """No mandatory value: the data module builds; a missing path fails only when data is read."""
    datamodule = instantiate(compose_data([f"data={option}"]).data)
    assert datamodule.path is None
    with pytest.raises(ValueError, match=r"data\.path="):
        datamodule.prepare_tokenizer()
