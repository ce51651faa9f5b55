"""Verifiable rewards for the synthetic tasks: a filled text in, a float out, no model involved.

Each reward is ``(filled, reference) -> float``: ``filled`` is the model's whole filled text
(prompt and completion, as the tokenizer decodes it) and ``reference`` the expected whole text.
Post-training (``objective=grpo``) turns them into advantages; ``llada.tasks`` uses
``TASK_REWARDS[task] == 1.0`` as "correct" where more than one answer is right (countdown).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

__all__ = [
    "FORMAT_CREDIT",
    "REWARDS",
    "TASK_REWARDS",
    "countdown",
    "evaluate",
    "exact_match",
    "sudoku_cells",
    "sudoku_solved",
]

Reward = Callable[[str, str], float]

# d1's partial credit for a well-formed countdown answer that misses: rewards the format early on.
FORMAT_CREDIT = 0.1
_SUDOKU_SEPARATORS = (4, 9, 14)  # token positions of " / " in "1 2 3 4 / 3 4 1 2 / ..."
_COUNTDOWN_TOKENS = re.compile(r"\d+|[A-Za-z]+|\S")  # numbers, words, single symbols
_OPERATORS = ("+", "-", "*")


def _normalized(text: str) -> str:
    return " ".join(text.split())


def exact_match(filled: str, reference: str) -> float:
    """1.0 if the texts are equal up to whitespace, else 0.0."""
    return float(_normalized(filled) == _normalized(reference))


def sudoku_solved(filled: str, reference: str) -> float:
    """1.0 if the grid is the reference solution: puzzles have one solution, so that is "solved"."""
    return exact_match(filled, reference)


def _grid_cells(text: str) -> list[str] | None:
    """The 16 cells of "1 2 3 4 / 3 4 1 2 / ..." (digits 1-4), or None if it is not such a grid."""
    tokens = text.split()
    if len(tokens) != 19 or any(tokens[i] != "/" for i in _SUDOKU_SEPARATORS):
        return None
    cells = [token for i, token in enumerate(tokens) if i not in _SUDOKU_SEPARATORS]
    return cells if all(cell in {"1", "2", "3", "4"} for cell in cells) else None


def sudoku_cells(filled: str, reference: str) -> float:
    """Fraction of the 16 cells equal to the reference's (a denser reward); 0.0 if malformed."""
    expected = _grid_cells(reference)
    if expected is None:
        raise ValueError(f"sudoku_cells: reference {reference!r} is not a 4x4 grid of digits 1-4")
    cells = _grid_cells(filled)
    if cells is None:
        return 0.0
    return sum(a == b for a, b in zip(cells, expected, strict=True)) / 16


def evaluate(numbers: list[int], operators: list[str]) -> int:
    """numbers[0] op numbers[1] op ...: products first, then + and - left to right (no eval())."""
    if len(operators) != len(numbers) - 1 or not set(operators) <= set(_OPERATORS):
        raise ValueError(f"evaluate: {numbers} and {operators} do not alternate number, operator")
    total, term = 0, numbers[0]
    sign = 1
    for operator, number in zip(operators, numbers[1:], strict=True):
        if operator == "*":
            term *= number
        else:
            total += sign * term
            sign, term = (1 if operator == "+" else -1), number
    return total + sign * term


def _countdown_parts(filled: str) -> tuple[list[int], int, list[int], list[str]] | None:
    """ "3 7 2 to 23 : 3 * 7 + 2" -> (given numbers, target, expression numbers, operators)."""
    tokens = _COUNTDOWN_TOKENS.findall(filled)
    if tokens.count(":") != 1:
        return None
    colon = tokens.index(":")
    given, expression = tokens[:colon], tokens[colon + 1 :]
    if len(given) < 3 or given[-2] != "to" or not all(t.isdigit() for t in given[:-2] + given[-1:]):
        return None
    numbers, target = [int(t) for t in given[:-2]], int(given[-1])
    used, operators = expression[0::2], expression[1::2]
    if len(used) != len(numbers) or len(operators) != len(numbers) - 1:
        return None
    if not all(t.isdigit() for t in used) or not all(t in _OPERATORS for t in operators):
        return None
    return numbers, target, [int(t) for t in used], operators


def countdown(filled: str, reference: str) -> float:
    """1.0 if the expression after ":" uses exactly the given numbers and reaches the target;
    ``FORMAT_CREDIT`` if it is well-formed (number op number op number) but wrong; else 0.0.

    The numbers and target are read from ``filled``'s own prompt (the given part, never
    generated); ``reference`` is unused, as any valid expression is right.
    """
    parts = _countdown_parts(filled)
    if parts is None:
        return 0.0
    numbers, target, used, operators = parts
    right = Counter(used) == Counter(numbers) and evaluate(used, operators) == target
    return 1.0 if right else FORMAT_CREDIT


REWARDS: dict[str, Reward] = {
    "exact_match": exact_match,
    "sudoku_solved": sudoku_solved,
    "sudoku_cells": sudoku_cells,
    "countdown": countdown,
}

# The reward that says "correct" for each synthetic task (1.0 exactly when it is).
TASK_REWARDS: dict[str, Reward] = {
    "sudoku": sudoku_solved,
    "reversal": exact_match,
    "countdown": countdown,
}
