"""Synthetic tasks: reproducible by seed, no train/test leakage, and their data configs."""

from __future__ import annotations

import re

import pytest
from hydra.utils import instantiate

from conftest import compose_config
from llada.data import TextDataModule
from llada.data.synthetic import (
    BLANK,
    RELATIONS,
    grid_text,
    reversal,
    sudoku,
    sudoku_grids,
    synthetic_documents,
)

SMALL = {"n_entities": 40, "repeats": 3}


def parse_grid(text: str) -> list[int | None]:
    return [None if cell == BLANK else int(cell) for cell in text.replace("/", " ").split()]


def is_valid_grid(cells: list[int]) -> bool:
    rows = [cells[r * 4 : r * 4 + 4] for r in range(4)]
    columns = [[row[c] for row in rows] for c in range(4)]
    boxes = [
        [rows[r][c] for r in (br, br + 1) for c in (bc, bc + 1)] for br in (0, 2) for bc in (0, 2)
    ]
    return all(sorted(group) == [1, 2, 3, 4] for group in rows + columns + boxes)


def compose_data(overrides: list[str]):
    return compose_config("train", overrides=["run_dir=/tmp/x", *overrides])


# ----------------------------------------------------------------------------- reversal


def test_reversal_is_reproducible_by_seed() -> None:
    assert reversal(**SMALL, seed=3) == reversal(**SMALL, seed=3)
    assert reversal(**SMALL, seed=3).train != reversal(**SMALL, seed=4).train
    assert reversal(**SMALL, seed=3).queries != reversal(**SMALL, seed=4).queries


def test_reversal_holds_out_the_reverse_direction() -> None:
    task = reversal(n_entities=60, both_fraction=0.5, repeats=4, facts_per_document=3, seed=1)
    train_text = " ".join(task.train)
    forward, reverse = task.queries["forward"], task.queries["reverse"]
    assert len(forward) == len(reverse) == len(task.test) == 15  # 30 pairs, half one-way

    for prompt, answer in reverse:  # held out: never stated in training
        assert f"{prompt} {answer}." in task.test
        assert f"{prompt} {answer}" not in train_text
    for prompt, answer in forward:  # the same facts, forward: trained, 4 times
        assert train_text.count(f"{prompt} {answer}.") == 4
    inverse_phrases = [relation.reverse.split("}", 1)[1] for relation in RELATIONS.values()]
    assert any(phrase in train_text for phrase in inverse_phrases)  # learnable on other pairs


def test_reversal_queries_have_one_answer() -> None:
    task = reversal(**SMALL, seed=0)
    for prompt, answer in task.queries["forward"] + task.queries["reverse"]:
        subject = prompt.split(" ", 1)[0]
        assert re.fullmatch(r"[A-Z][a-z]{3,5}", subject) and re.fullmatch(r"[A-Z][a-z]+", answer)
        assert subject != answer
    people = [p.split(" ", 1)[0] for p, _ in task.queries["forward"]]
    people += [a for _, a in task.queries["forward"]]
    assert len(people) == len(set(people))  # every person in one pair only


def test_reversal_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="n_entities"):
        reversal(n_entities=7)


# ----------------------------------------------------------------------------- sudoku


def test_sudoku_grids_are_all_valid_and_distinct() -> None:
    grids = sudoku_grids()
    assert len(grids) == len(set(grids)) == 288
    assert all(is_valid_grid(list(grid)) for grid in grids)
    assert parse_grid(grid_text(grids[0])) == list(grids[0])


def test_sudoku_is_reproducible_by_seed() -> None:
    assert sudoku(seed=5) == sudoku(seed=5)
    assert sudoku(seed=5).test != sudoku(seed=6).test
    assert sudoku(seed=5).queries != sudoku(seed=6).queries


@pytest.mark.parametrize("n_blanks", [4, 8])
def test_sudoku_puzzles_are_held_out_and_uniquely_solvable(n_blanks: int) -> None:
    task = sudoku(test_fraction=0.25, n_blanks=n_blanks, seed=2)
    grids = sudoku_grids()
    assert len(task.test) == 72 and len(task.train) == 216
    assert not set(task.test) & set(task.train)  # no test grid in training
    for puzzle, solution in task.queries["infill"]:
        assert solution in task.test and solution not in task.train
        clues = parse_grid(puzzle)
        assert clues.count(None) == n_blanks
        assert all(c is None or c == s for c, s in zip(clues, parse_grid(solution), strict=True))
        matches = [
            g for g in grids if all(c is None or c == v for c, v in zip(clues, g, strict=True))
        ]
        assert len(matches) == 1  # the answer is the only completion


def test_synthetic_documents_registry() -> None:
    assert synthetic_documents("sudoku", "test", seed=1) == sudoku(seed=1).test
    assert synthetic_documents("reversal", **SMALL) == reversal(**SMALL).train
    with pytest.raises(ValueError, match="expected one of: reversal, sudoku") as info:
        synthetic_documents("chess")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="expected train or test"):
        synthetic_documents("sudoku", "validation")


# ----------------------------------------------------------------------------- configs


def test_sudoku_config_packs_one_grid_per_block() -> None:
    datamodule = instantiate(compose_data(["data=sudoku"]).data)
    assert isinstance(datamodule, TextDataModule)
    tokenizer = datamodule.prepare_tokenizer()
    datamodule.setup()
    eos = tokenizer.eos_token_id
    for row in datamodule.train_dataset[:20]["input_ids"].tolist():
        assert row[-1] == eos and eos not in row[:-1]
        cells = parse_grid(tokenizer.decode(row[:-1]))
        assert is_valid_grid(cells)  # type: ignore[arg-type]
        assert grid_text(tuple(cells)) not in sudoku().test


def test_reversal_config_composes_and_sets_up() -> None:
    cfg = compose_data(["data=reversal", "data.corpus.n_entities=100", "data.corpus.repeats=4"])
    datamodule = instantiate(cfg.data)
    datamodule.prepare_tokenizer()
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["input_ids"].shape == (cfg.data.batch_size, cfg.data.block_size)
