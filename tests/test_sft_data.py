"""SFT data: row layout, prompt masks, conversation sampling, templates, cache and config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config
from llada.data.sft import (
    DEFAULT_SFT_PATH,
    SFTDataModule,
    encode_example,
    format_prompt,
    read_examples,
)
from llada.diffusion.sft import response_positions

PAIRS = [
    {"prompt": f"What is item number {i}?", "response": f"Item {i} is a small red box."}
    for i in range(12)
]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "second question"},
    {"role": "assistant", "content": "second answer"},
    {"role": "user", "content": "third question"},
    {"role": "assistant", "content": "third answer"},
]


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def make_datamodule(tmp_path: Path, records: list[dict], **settings) -> SFTDataModule:
    path = write_jsonl(tmp_path / "sft.jsonl", records)
    options = {"block_size": 32, "batch_size": 4, "vocab_size": 200, **settings}
    return SFTDataModule(path, cache_dir=str(tmp_path / "cache"), **options)


# ----------------------------------------------------------------------------- row layout


def test_encode_example_layout() -> None:
    ids, n_prompt = encode_example([10, 11], [20, 21, 22], eos=3, length=8)
    assert (ids, n_prompt) == ([10, 11, 20, 21, 22, 3, 3, 3], 2)


def test_encode_example_truncates_the_prompt_from_the_left() -> None:
    ids, n_prompt = encode_example([10, 11, 12, 13, 14], [20, 21], eos=3, length=5)
    assert (ids, n_prompt) == ([13, 14, 20, 21, 3], 2)
    ids, n_prompt = encode_example([10, 11], [20, 21, 22, 23, 24, 25], eos=3, length=4)
    assert (ids, n_prompt) == ([20, 21, 22, 23], 0)  # response start kept, no room for EOS


def test_plain_prompt_format() -> None:
    turns = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    assert format_prompt(turns, None) == "System: S\nUser: Q\nAssistant: "
    with pytest.raises(ValueError, match="unknown chat role 'tool'"):
        format_prompt([{"role": "tool", "content": "x"}], None)


# ----------------------------------------------------------------------------- data module


def test_masks_mark_exactly_the_prompt(tmp_path: Path) -> None:
    datamodule = make_datamodule(tmp_path, PAIRS)
    tokenizer = datamodule.prepare_tokenizer()
    datamodule.setup()
    examples = datamodule.load_examples()["validation"]
    batch = next(iter(datamodule.val_dataloader()))
    eos = tokenizer.eos_token_id
    assert set(batch) == {"input_ids", "prompt_mask", "attention_mask"}
    assert batch["prompt_mask"].dtype == torch.bool
    assert torch.equal(batch["attention_mask"], torch.ones_like(batch["input_ids"]))

    for row, example in enumerate(examples):
        prompt = tokenizer(format_prompt(example.turns, tokenizer), add_special_tokens=False)
        response = tokenizer(example.response, add_special_tokens=False)
        ids, mask = batch["input_ids"][row].tolist(), batch["prompt_mask"][row]
        n_prompt, n_response = len(prompt["input_ids"]), len(response["input_ids"])
        assert ids[:n_prompt] == prompt["input_ids"]
        assert ids[n_prompt : n_prompt + n_response] == response["input_ids"]
        assert set(ids[n_prompt + n_response :]) == {eos}  # EOS, then EOS padding
        assert mask[:n_prompt].all() and not mask[n_prompt:].any()
    # The SFT loss scores every non-prompt position, the EOS padding included.
    response = response_positions(batch["prompt_mask"], batch["attention_mask"])
    assert torch.equal(response, ~batch["prompt_mask"])


def test_long_prompts_keep_the_response_start(tmp_path: Path) -> None:
    records = [{"prompt": "word " * 40 + "end", "response": f"answer {i}"} for i in range(4)]
    datamodule = make_datamodule(tmp_path, records, block_size=12, val_fraction=0.25)
    tokenizer = datamodule.prepare_tokenizer()
    datamodule.setup()
    batch = next(iter(datamodule.val_dataloader()))
    ids, mask = batch["input_ids"][0], batch["prompt_mask"][0]
    [example] = datamodule.load_examples()["validation"]
    response = tokenizer(example.response, add_special_tokens=False)["input_ids"]
    n_prompt = int(mask.sum())
    assert n_prompt == 12 - len(response) - 1
    assert ids[n_prompt : n_prompt + len(response)].tolist() == response
    assert tokenizer.convert_ids_to_tokens(int(ids[n_prompt - 1])) == ":"  # "Assistant: " kept


def test_conversation_prompt_ends_right_before_the_sampled_turn(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CONVERSATION}] * 24)
    examples = read_examples(path, seed=0)
    assert examples == read_examples(path, seed=0)  # deterministic by seed
    chosen = set()
    for example in examples:
        index = len(example.turns)
        assert list(example.turns) == CONVERSATION[:index]
        assert CONVERSATION[index]["role"] == "assistant"
        assert example.response == CONVERSATION[index]["content"]
        chosen.add(index)
    assert chosen == {2, 4, 6}  # every assistant turn gets drawn over 24 records
    assert [len(e.turns) for e in read_examples(path, seed=1)] != [len(e.turns) for e in examples]
    prompt = format_prompt(examples[0].turns, None)
    assert prompt.endswith(f"User: {examples[0].turns[-1]['content']}\nAssistant: ")


def test_chat_template_is_used_when_the_tokenizer_has_one(tmp_path: Path) -> None:
    datamodule = make_datamodule(tmp_path, [{"messages": CONVERSATION[1:3]}] * 4 + PAIRS[:4])
    tokenizer = datamodule.prepare_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}[{{ m.role }}] {{ m.content }} {% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    turns = [{"role": "user", "content": "hi"}]
    assert format_prompt(turns, tokenizer) == "[user] hi [assistant]"
    datamodule.setup()
    batch = next(iter(datamodule.val_dataloader()))
    [example] = datamodule.load_examples()["validation"]
    templated = tokenizer(format_prompt(example.turns, tokenizer), add_special_tokens=False)
    plain = tokenizer(format_prompt(example.turns, None), add_special_tokens=False)
    prompt_ids = batch["input_ids"][0][batch["prompt_mask"][0]].tolist()
    assert prompt_ids == templated["input_ids"] != plain["input_ids"]


def test_rows_are_cached_by_content_and_settings(tmp_path: Path) -> None:
    first = make_datamodule(tmp_path, PAIRS)
    first.prepare_tokenizer()
    first.setup()
    assert not first.cache_hit
    again = make_datamodule(tmp_path, PAIRS)
    again.prepare_tokenizer()
    again.setup()
    assert again.cache_hit
    assert torch.equal(again.train_dataset[:]["input_ids"], first.train_dataset[:]["input_ids"])
    longer = make_datamodule(tmp_path, PAIRS, block_size=40)
    longer.prepare_tokenizer()
    longer.setup()
    assert not longer.cache_hit and longer.train_dataset[:]["input_ids"].shape[1] == 40
    assert not list((tmp_path / "cache").glob("*.tmp-*"))


def test_bad_records_fail_with_one_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: expected 'prompt'/'response'") as info:
        read_examples(path)
    assert "\n" not in str(info.value)
    path = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(ValueError, match="no assistant turn"):
        read_examples(path)
    assert (
        read_examples(
            write_jsonl(tmp_path / "q.jsonl", [{"question": "q", "answer": "a"}]),
            prompt_field="question",
            response_field="answer",
        )[0].response
        == "a"
    )


# ----------------------------------------------------------------------------- config


def test_sft_jsonl_config_runs_on_the_shipped_example() -> None:
    cfg = compose_config("train", overrides=["data=sft_jsonl", "run_dir=/tmp/x"])
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, SFTDataModule)
    assert datamodule.path == DEFAULT_SFT_PATH and Path(DEFAULT_SFT_PATH).is_file()
    datamodule.prepare_tokenizer()
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["input_ids"].shape[1] == cfg.data.block_size
    assert batch["prompt_mask"].any(dim=1).all()  # every row has a prompt
    assert (~batch["prompt_mask"]).any(dim=1).all()  # and a response
    assert datamodule.unigram_perplexity() > 1.0


def test_chat_records_from_a_saved_hf_dataset(tmp_path: Path) -> None:
    """A hub chat dataset, exercised offline through its save_to_disk directory."""
    import datasets

    from llada.data.sft import read_examples

    conversations = [
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ]
        },
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    ]
    datasets.Dataset.from_list(conversations).save_to_disk(str(tmp_path / "chat"))
    examples = read_examples(str(tmp_path / "chat"))
    assert [e.response for e in examples] == ["hello", "4"]
