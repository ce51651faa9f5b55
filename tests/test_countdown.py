"""Countdown (llada.data.synthetic.countdown) and the post-training prompts of the synthetic tasks:
reproducible, valid, and never a held-out problem or grid; plus its evaluation in llada.tasks."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hydra.utils import instantiate

from conftest import compose_config
from llada.data.rewards import countdown as countdown_reward
from llada.data.synthetic import (
    BLANK,
    countdown,
    countdown_problems,
    countdown_text,
    sudoku,
    sudoku_grids,
    synthetic_documents,
)
from llada.data.tokenizer import train_tokenizer
from llada.tasks import JUDGES, TEMPLATE_BUILDERS, answer_after, exact_match

DOCUMENT = re.compile(r"(\d) (\d) (\d) to (\d+) : (.+)")

# sudoku()'s output before train_queries existed (sha256 of json [train, test, queries]): the
# held-out puzzles must not move when training puzzles are added.
SUDOKU_BEFORE = {
    "default": "72accb80c08710972f08c08351d39ee18d3869c896287fa7dc3e95e518352424",
    "seed2": "4e3e4a498a9deb23aa8c41776a7d7da0ce43124dea8e72aaa136253849e28ac8",
}
SUDOKU_FIRST_PUZZLE = (
    "_ 4 1 _ / _ _ _ 3 / 4 3 _ 1 / 2 _ _ 4",
    "3 4 1 2 / 1 2 4 3 / 4 3 2 1 / 2 1 3 4",
)


def problem_of(text: str) -> tuple[tuple[int, ...], int]:
    """(sorted numbers, target) of a document or prompt "3 7 2 to 23 : ..."."""
    numbers, target = text.split(" to ")[0], text.split(" to ")[1].split(" :")[0]
    return tuple(sorted(int(n) for n in numbers.split())), int(target)


# ----------------------------------------------------------------------------- countdown


def test_countdown_text_formats_a_document_and_its_prompt() -> None:
    assert countdown_text([3, 7, 2], 23, "3 * 7 + 2") == "3 7 2 to 23 : 3 * 7 + 2"
    assert countdown_text((3, 7, 2), 23) == "3 7 2 to 23 :"


def test_countdown_problems_are_all_reachable_targets() -> None:
    problems = countdown_problems()
    assert len(problems) == 1386 and sum(map(len, problems.values())) == 4924
    assert "3 * 7 + 2" in problems[(2, 3, 7), 23] and "2 + 3 * 7" in problems[(2, 3, 7), 23]
    assert ((1, 1, 1), 0) not in problems  # 1 - 1 * 1: the target must be positive
    assert all(target > 0 for _, target in problems)


def test_countdown_is_reproducible_by_seed() -> None:
    assert countdown(seed=3) == countdown(seed=3)
    assert countdown(seed=3).train != countdown(seed=4).train
    assert countdown(seed=3).queries != countdown(seed=4).queries
    assert synthetic_documents("countdown", "test", seed=3) == countdown(seed=3).test


def test_every_countdown_document_is_a_valid_five_token_answer() -> None:
    task = countdown()
    assert len(task.train) == 4432 and len(task.test) == 492  # all 4924 pairs, split by problem
    for document in task.train + task.test:
        match = DOCUMENT.fullmatch(document)
        assert match, document
        assert len(match.group(5).split()) == 5
        assert countdown_reward(document, document) == 1.0  # right numbers, reaches the target
    for prompt, expression in task.queries["answer"] + task.train_queries["answer"]:
        assert prompt.endswith(" :") and len(expression.split()) == 5
        assert countdown_reward(f"{prompt} {expression}", "") == 1.0


def test_held_out_countdown_problems_never_appear_in_training() -> None:
    task = countdown(test_fraction=0.1, n_queries=50, seed=1)
    held_out = {problem_of(document) for document in task.test}
    trained = {problem_of(document) for document in task.train}
    assert len(held_out) == 139 and not held_out & trained
    queried = [problem_of(prompt) for prompt, _ in task.queries["answer"]]
    assert len(queried) == len(set(queried)) == 50  # capped at n_queries, one per problem
    assert set(queried) <= held_out
    # Not even as text: no training document starts with a held-out prompt, in any number order.
    train_prompts = {document.split(" : ")[0] + " :" for document in task.train}
    for numbers, target in held_out:
        for order in itertools.permutations(numbers):
            assert countdown_text(order, target) not in train_prompts


def test_countdown_train_queries_are_the_training_problems() -> None:
    task = countdown(seed=2)
    held_out = {problem_of(document) for document in task.test}
    trained = {problem_of(document) for document in task.train}
    asked = [problem_of(prompt) for prompt, _ in task.train_queries["answer"]]
    assert len(asked) == len(set(asked)) and set(asked) == trained
    assert not set(asked) & held_out


def test_countdown_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        countdown(test_fraction=1.0)
    with pytest.raises(ValueError, match="n_queries"):
        countdown(n_queries=0)


# ----------------------------------------------------------------------------- sudoku


def sudoku_digest(**options: Any) -> str:
    task = sudoku(**options)
    text = json.dumps([task.train, task.test, task.queries], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def test_sudoku_test_puzzles_are_unchanged() -> None:
    assert sudoku_digest() == SUDOKU_BEFORE["default"]
    assert sudoku_digest(seed=2, test_fraction=0.25, n_blanks=4) == SUDOKU_BEFORE["seed2"]
    assert sudoku().queries["infill"][0] == SUDOKU_FIRST_PUZZLE
    assert sudoku(puzzles_per_grid=1).queries == sudoku(puzzles_per_grid=6).queries


@pytest.mark.parametrize("n_blanks", [4, 8])
def test_sudoku_train_puzzles_use_training_grids_only(n_blanks: int) -> None:
    task = sudoku(n_blanks=n_blanks, seed=1, puzzles_per_grid=3)
    grids = sudoku_grids()
    puzzles = task.train_queries["infill"]
    assert len(puzzles) == len(set(puzzles)) and len(puzzles) > 2 * len(task.train)
    assert {solution for _, solution in puzzles} == set(task.train)
    for puzzle, solution in puzzles:
        assert solution not in task.test
        clues = [None if cell == BLANK else int(cell) for cell in puzzle.replace("/", " ").split()]
        assert clues.count(None) == n_blanks
        matches = [
            g for g in grids if all(c is None or c == v for c, v in zip(clues, g, strict=True))
        ]
        assert len(matches) == 1  # unique: its own training grid, never a held-out one
    assert sudoku(seed=1).train_queries == sudoku(seed=1).train_queries


# ----------------------------------------------------------------------------- evaluation


class CannedModel:
    """Stands in for a DiffusionLM in `exact_match`: fills each template with a given answer."""

    def __init__(self, tokenizer: Any, answers: list[str]) -> None:
        self.tokenizer, self.answers = tokenizer, answers

    def infill_with_info(self, templates: list[str], seed: int, **options: Any) -> Any:
        texts = [
            t.split(" [MASK]")[0] + " " + a for t, a in zip(templates, self.answers, strict=True)
        ]
        return SimpleNamespace(texts=texts, sample_nfe=[5] * len(texts))


def test_countdown_template_puts_five_slots_after_the_prompt() -> None:
    assert TEMPLATE_BUILDERS["countdown"] is answer_after
    assert answer_after(("3 7 2 to 23 :", "3 * 7 + 2"), 5) == (
        "3 7 2 to 23 : [MASK]x5",
        "3 7 2 to 23 : 3 * 7 + 2",
    )


def test_countdown_is_judged_by_its_reward_other_tasks_by_text(tmp_path: Path) -> None:
    judge = JUDGES["countdown"]
    assert judge("3 7 2 to 23 : 2 + 7 * 3", "3 7 2 to 23 : 3 * 7 + 2")  # not the reference
    assert not judge("3 7 2 to 23 : 3 + 7 * 2", "3 7 2 to 23 : 3 * 7 + 2")  # 17
    assert "sudoku" not in JUDGES and "reversal" not in JUDGES

    tokenizer = train_tokenizer(countdown().train, 128, "wordpiece", tmp_path)
    queries = [("3 7 2 to 23 :", "3 * 7 + 2")] * 3
    model = CannedModel(tokenizer, ["2 + 7 * 3", "3 * 7 + 2", "3 + 7 * 2"])
    accuracy, records = exact_match(model, "countdown", queries)  # type: ignore[arg-type]
    assert [r["correct"] for r in records] == [True, True, False]
    assert accuracy == 2 / 3
    assert records[0]["template"] == "3 7 2 to 23 : [MASK]x5"  # 5 tokens with this tokenizer
    assert records[0]["expected"] == "3 7 2 to 23 : 3 * 7 + 2"


# ----------------------------------------------------------------------------- configs


def test_countdown_config_gives_one_whole_document_per_row() -> None:
    cfg = compose_config("train", overrides=["run_dir=/tmp/x", "experiment=countdown"])
    assert cfg.callbacks.task._target_ == "llada.tasks.TaskAccuracy"
    assert cfg.data.corpus.task == "countdown" and not cfg.data.packing
    datamodule = instantiate(cfg.data)
    tokenizer = datamodule.prepare_tokenizer()
    datamodule.setup()
    eos = tokenizer.eos_token_id
    train_text = set(countdown().train)
    for row, attention in zip(
        datamodule.train_dataset[:50]["input_ids"].tolist(),
        datamodule.train_dataset[:50]["attention_mask"].tolist(),
        strict=True,
    ):
        length = sum(attention)
        assert length < cfg.data.block_size and row[length - 1] == eos  # never cut
        assert tokenizer.decode(row[: length - 1]) in train_text
