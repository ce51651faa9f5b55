"""Verifiable rewards (llada.data.rewards) on hand-made filled texts."""

from __future__ import annotations

import pytest

from llada.data.rewards import (
    FORMAT_CREDIT,
    REWARDS,
    TASK_REWARDS,
    countdown,
    evaluate,
    exact_match,
    sudoku_cells,
    sudoku_solved,
)

SOLUTION = "1 2 3 4 / 3 4 1 2 / 2 1 4 3 / 4 3 2 1"


def test_exact_match_ignores_whitespace_only() -> None:
    assert exact_match("a  b\tc ", " a b c") == 1.0
    assert exact_match("a b c", "a b d") == 0.0
    assert exact_match("ab c", "a b c") == 0.0


def test_sudoku_solved_is_the_reference_grid() -> None:
    assert sudoku_solved(SOLUTION, SOLUTION) == 1.0
    assert sudoku_solved(SOLUTION.replace(" / ", "  /  "), SOLUTION) == 1.0
    wrong = "2 1 3 4 / 3 4 1 2 / 2 1 4 3 / 4 3 2 1"
    assert sudoku_solved(wrong, SOLUTION) == 0.0
    assert sudoku_solved("1 2 3 4", SOLUTION) == 0.0


def test_sudoku_cells_is_the_fraction_of_right_cells() -> None:
    assert sudoku_cells(SOLUTION, SOLUTION) == 1.0
    two_swapped = "2 1 3 4 / 3 4 1 2 / 2 1 4 3 / 4 3 2 1"
    assert sudoku_cells(two_swapped, SOLUTION) == 14 / 16
    all_ones = "1 1 1 1 / 1 1 1 1 / 1 1 1 1 / 1 1 1 1"
    assert sudoku_cells(all_ones, SOLUTION) == 4 / 16  # one 1 per row


@pytest.mark.parametrize(
    "malformed",
    [
        "1 2 3 4 / 3 4 1 2 / 2 1 4 3 / 4 3 2",  # a cell short
        "1 2 3 4 3 4 1 2 2 1 4 3 4 3 2 1",  # no row separators
        "1 2 3 4 / 3 4 1 2 / 2 1 4 3 / 4 3 2 5",  # 5 is no cell
        "1 2 3 4 / 3 4 1 2 / 2 1 4 3 / 4 3 2 [MASK]",  # left unfilled
        "1 2 3 / 4 3 4 1 2 / 2 1 4 3 / 4 3 2 1",  # separator in the wrong place
        "",
    ],
)
def test_sudoku_rewards_give_nothing_for_a_malformed_grid(malformed: str) -> None:
    assert sudoku_cells(malformed, SOLUTION) == 0.0
    assert sudoku_solved(malformed, SOLUTION) == 0.0


def test_sudoku_cells_rejects_a_malformed_reference() -> None:
    with pytest.raises(ValueError, match="is not a 4x4 grid"):
        sudoku_cells(SOLUTION, "1 2 3 4")


def test_evaluate_multiplies_before_adding() -> None:
    assert evaluate([2, 3, 4], ["+", "*"]) == 14
    assert evaluate([2, 3, 4], ["*", "+"]) == 10
    assert evaluate([2, 3, 4], ["-", "*"]) == -10
    assert evaluate([9, 3, 4], ["-", "-"]) == 2  # left to right
    assert evaluate([9, 3, 4], ["-", "+"]) == 10
    assert evaluate([2, 3, 4], ["*", "*"]) == 24
    with pytest.raises(ValueError, match="do not alternate"):
        evaluate([2, 3], ["+", "+"])


@pytest.mark.parametrize(
    ("filled", "reward"),
    [
        ("3 7 2 to 23 : 3 * 7 + 2", 1.0),
        ("3 7 2 to 23 : 2 + 7 * 3", 1.0),  # any order of the numbers
        ("  3 7 2  to 23 :   2 + 3 * 7 ", 1.0),  # whitespace
        ("2 3 4 to 14 : 2 + 3 * 4", 1.0),  # precedence: 2 + 12
        ("2 3 4 to 20 : 2 + 3 * 4", FORMAT_CREDIT),  # (2 + 3) * 4 is not what it says
        ("3 7 2 to 24 : 3 * 7 + 2", FORMAT_CREDIT),  # off target
        ("3 7 2 to 23 : 3 * 7 + 3", FORMAT_CREDIT),  # reuses 3, drops 2
        ("3 7 2 to 23 : 4 * 5 + 3", FORMAT_CREDIT),  # wrong numbers
        ("3 7 2 to 23 : 3 * 7 * 2", FORMAT_CREDIT),
        ("3 7 2 to 23 : 3 * 7 +", 0.0),  # too short
        ("3 7 2 to 23 : 3 * 7 + 2 + 1", 0.0),  # too long
        ("3 7 2 to 23 : 3 * 7 / 2", 0.0),  # no division
        ("3 7 2 to 23 : 3 7 * + 2", 0.0),  # not number op number op number
        ("3 7 2 to 23 : 3 * 7 + [MASK]", 0.0),  # left unfilled
        ("3 7 2 to 23 3 * 7 + 2", 0.0),  # no ":"
        ("3 7 2 to 23 : 3 * 7 : 2", 0.0),  # two ":"
        ("3 7 2 23 : 3 * 7 + 2", 0.0),  # no "to"
        ("to 23 : 3 * 7 + 2", 0.0),  # no numbers given
        ("", 0.0),
    ],
)
def test_countdown_reward(filled: str, reward: float) -> None:
    assert countdown(filled, "3 7 2 to 23 : 3 * 7 + 2") == reward


def test_countdown_reads_the_problem_from_the_filled_text_not_the_reference() -> None:
    assert countdown("1 1 1 to 3 : 1 + 1 + 1", "3 7 2 to 23 : 3 * 7 + 2") == 1.0


def test_registries_name_the_rewards() -> None:
    assert set(REWARDS) == {"exact_match", "sudoku_solved", "sudoku_cells", "countdown"}
    assert set(TASK_REWARDS) == {"sudoku", "reversal", "countdown"}
    assert TASK_REWARDS["sudoku"] is sudoku_solved and TASK_REWARDS["reversal"] is exact_match
    assert TASK_REWARDS["countdown"] is countdown
    assert set(TASK_REWARDS.values()) <= set(REWARDS.values())
