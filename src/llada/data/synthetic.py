"""Synthetic tasks where masked diffusion is expected to differ from left-to-right models.

All are generated here (no download), reproducible by seed, and split so that nothing a test query
asks for appears in the training text:

- ``reversal``: made-up people linked by one-directional facts ("Bako is the parent of Timu").
  Training text states each held-out fact in one direction only; the test asks the other direction
  ("Timu is the child of" -> "Bako"), the "reversal curse" of autoregressive LMs. Some other pairs
  are stated both ways so the inverse phrasing itself is learnable.
- ``sudoku``: 4x4 Sudoku. Training text is complete valid grids; the test is puzzles (blanks ``_``)
  over grids that never appear in training, with a unique solution. Filling blanks in the middle
  of a grid is the case where any-order generation should help.
- ``countdown``: reach a target from three digits with two of ``+ - *`` ("3 7 2 to 23 : 3 * 7 + 2").
  The answer is checkable (``llada.data.rewards.countdown``), so it suits post-training with
  verifiable rewards; the test asks problems (numbers and target) that training never states.

Use :func:`synthetic_documents` as a ``TextDataModule`` corpus (``conf/data/reversal.yaml``,
``conf/data/sudoku.yaml``, ``conf/data/countdown.yaml``) and the task's ``queries`` for evaluation.
A task's ``train_queries`` are prompts over training data only, for post-training rollouts (GRPO).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "BLANK",
    "OPERATORS",
    "RELATIONS",
    "TASKS",
    "Query",
    "SyntheticTask",
    "countdown",
    "countdown_problems",
    "countdown_text",
    "grid_text",
    "make_names",
    "reversal",
    "sudoku",
    "sudoku_grids",
    "synthetic_documents",
]

Query = tuple[str, str]  # (prompt, answer): the answer is the text that follows the prompt
Grid = tuple[int, ...]  # 16 digits in 1..4, row by row
Problem = tuple[tuple[int, ...], int]  # (sorted numbers, target) of a countdown problem

BLANK = "_"
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class SyntheticTask:
    """One generated task: training documents, held-out test documents and test queries.

    ``train_queries`` are queries of the same kinds over training data only: what post-training
    rolls out on without ever seeing a held-out query.
    """

    train: list[str]
    test: list[str]
    queries: dict[str, list[Query]] = field(default_factory=dict)
    train_queries: dict[str, list[Query]] = field(default_factory=dict)


@dataclass(frozen=True)
class Relation:
    """A relation and its inverse, as prompts that the other person's name completes."""

    forward: str  # "{a} is the parent of" + " {b}"
    reverse: str  # "{b} is the child of" + " {a}"


RELATIONS: dict[str, Relation] = {
    "parent": Relation("{a} is the parent of", "{b} is the child of"),
    "teacher": Relation("{a} is the teacher of", "{b} is the student of"),
    "employer": Relation("{a} is the employer of", "{b} is the employee of"),
}


def make_names(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct made-up names of 2-3 consonant-vowel syllables ("Bakimo"), in draw order."""
    names: dict[str, None] = {}
    while len(names) < n:
        syllables = rng.randint(2, 3)
        name = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))
        names[name.capitalize()] = None
    return list(names)


def _sentence(query: Query) -> str:
    prompt, answer = query
    return f"{prompt} {answer}."


def reversal(
    n_entities: int = 400,
    both_fraction: float = 0.5,
    repeats: int = 10,
    facts_per_document: int = 4,
    seed: int = 0,
) -> SyntheticTask:
    """Facts over disjoint pairs of ``n_entities`` people; reverse queries only on one-way pairs.

    Every person is in exactly one pair, so each query has one right answer. ``both_fraction`` of
    the pairs are stated in both directions in training; the rest only forward, and their reverse
    statements are the test documents. Each training fact is repeated ``repeats`` times (shuffled,
    ``facts_per_document`` per document) so that the data module's own validation split, which
    holds out whole documents, still leaves every fact in the training split.

    Queries: ``forward`` asks trained facts of the one-way pairs (memorisation), ``reverse`` asks
    the same facts backwards (never seen) as a prompt to complete, and ``reverse_infill`` asks the
    reverse question as the trained sentence with its first name to fill in (a template with an
    ``{answer}`` slot): the form a model that reads both ways can use.
    """
    if n_entities < 4 or n_entities % 2:
        raise ValueError(f"reversal: n_entities must be even and >= 4, got {n_entities}")
    if not 0.0 <= both_fraction < 1.0:
        raise ValueError(f"reversal: both_fraction must be in [0, 1), got {both_fraction}")
    rng = random.Random(seed)
    names = make_names(n_entities, rng)
    relations = list(RELATIONS.values())
    pairs = [(names[i], names[i + 1], rng.choice(relations)) for i in range(0, n_entities, 2)]
    n_both = round(len(pairs) * both_fraction)
    forward = [(rel.forward.format(a=a), b) for a, b, rel in pairs]
    reverse = [(rel.reverse.format(b=b), a) for a, b, rel in pairs]

    facts = [_sentence(q) for q in forward] + [_sentence(q) for q in reverse[:n_both]]
    stream = facts * repeats
    rng.shuffle(stream)
    train = [
        " ".join(stream[i : i + facts_per_document])
        for i in range(0, len(stream), facts_per_document)
    ]
    held_out = reverse[n_both:]
    # The reverse question as a fill-in of the trained sentence: "{answer} is the parent of Timu."
    reverse_infill = [
        (f"{rel.forward.format(a='{answer}')} {b}.", a) for a, b, rel in pairs[n_both:]
    ]
    return SyntheticTask(
        train=train,
        test=[_sentence(q) for q in held_out],
        queries={
            "forward": forward[n_both:],
            "reverse": held_out,
            "reverse_infill": reverse_infill,
        },
    )


def _consistent(rows: list[tuple[int, ...]]) -> bool:
    """No digit repeats in a column or a 2x2 box among the rows placed so far."""
    columns = all(len({row[c] for row in rows}) == len(rows) for c in range(4))
    boxes = (
        [row[c] for row in band for c in cols]
        for band in (rows[:2], rows[2:])
        for cols in ((0, 1), (2, 3))
    )
    return columns and all(len(set(box)) == len(box) for box in boxes)


def sudoku_grids() -> list[Grid]:
    """All 288 valid 4x4 Sudoku grids (rows, columns and 2x2 boxes hold 1..4), in sorted order."""
    grids: list[Grid] = []
    partials: list[list[tuple[int, ...]]] = [[]]
    while partials:
        rows = partials.pop()
        if len(rows) == 4:
            grids.append(tuple(itertools.chain.from_iterable(rows)))
            continue
        for row in itertools.permutations(range(1, 5)):
            if _consistent([*rows, row]):
                partials.append([*rows, row])
    return sorted(grids)


def grid_text(cells: tuple[int | None, ...]) -> str:
    """ "1 2 3 4 / 3 4 1 2 / ...": one token per cell with a word-level tokenizer; None is BLANK."""
    symbols = [BLANK if cell is None else str(cell) for cell in cells]
    return " / ".join(" ".join(symbols[row * 4 : row * 4 + 4]) for row in range(4))


ClueMasks = dict[tuple[int, int], int]  # (position, digit) -> bitmask over grids


def _clue_masks(grids: list[Grid]) -> ClueMasks:
    """(position, digit) -> bitmask of the grids with that digit there: a fast uniqueness check."""
    masks: ClueMasks = {}
    for index, grid in enumerate(grids):
        for position, digit in enumerate(grid):
            masks[position, digit] = masks.get((position, digit), 0) | 1 << index
    return masks


def _completions(cells: list[int | None], masks: ClueMasks) -> int:
    """How many grids agree with every clue of ``cells``."""
    agree = sum(mask for (position, _), mask in masks.items() if position == 0)  # every grid
    for position, cell in enumerate(cells):
        if cell is not None:
            agree &= masks[position, cell]
    return agree.bit_count()


def _make_puzzle(
    grid: Grid, masks: ClueMasks, n_blanks: int, rng: random.Random
) -> tuple[int | None, ...]:
    """Blank cells of ``grid`` in random order while the solution stays unique (up to n_blanks)."""
    cells: list[int | None] = list(grid)
    for position in rng.sample(range(16), 16):
        if sum(cell is None for cell in cells) == n_blanks:
            break
        trial = [*cells]
        trial[position] = None
        if _completions(trial, masks) == 1:
            cells = trial
    return tuple(cells)


def sudoku(
    test_fraction: float = 0.2, n_blanks: int = 8, seed: int = 0, puzzles_per_grid: int = 4
) -> SyntheticTask:
    """4x4 Sudoku: complete grids to train on; held-out grids as puzzles with a unique solution.

    The 288 grids are shuffled by ``seed`` and ``test_fraction`` of them are held out: the
    training text never contains a test grid. Each test grid becomes one puzzle with up to
    ``n_blanks`` blanks (``BLANK``). Query ``infill``: (puzzle, solution), both as
    :func:`grid_text`; to evaluate, replace each BLANK of the puzzle by a mask token and compare
    the filled grid with the solution.

    ``train_queries["infill"]``: up to ``puzzles_per_grid`` distinct puzzles per training grid,
    made the same way but from their own random stream, so the test puzzles do not depend on them.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"sudoku: test_fraction must be in (0, 1), got {test_fraction}")
    if not 1 <= n_blanks <= 12:
        raise ValueError(f"sudoku: n_blanks must be in 1..12 (4 clues at least), got {n_blanks}")
    if puzzles_per_grid < 1:
        raise ValueError(f"sudoku: puzzles_per_grid must be >= 1, got {puzzles_per_grid}")
    grids = sudoku_grids()
    masks = _clue_masks(grids)
    rng = random.Random(seed)
    order = rng.sample(grids, len(grids))
    n_test = max(1, round(len(grids) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    puzzles = [(grid_text(_make_puzzle(g, masks, n_blanks, rng)), grid_text(g)) for g in test]
    train_rng = random.Random(f"sudoku-train-puzzles-{seed}")
    train_puzzles = [
        (puzzle, grid_text(g))
        for g in train
        for puzzle in dict.fromkeys(
            grid_text(_make_puzzle(g, masks, n_blanks, train_rng)) for _ in range(puzzles_per_grid)
        )
    ]
    return SyntheticTask(
        train=[grid_text(g) for g in train],
        test=[grid_text(g) for g in test],
        queries={"infill": puzzles},
        train_queries={"infill": train_puzzles},
    )


OPERATORS = ("+", "-", "*")


def _value(numbers: tuple[int, ...], operators: tuple[str, ...]) -> int:
    """numbers[0] op numbers[1] op ...: products first, then sums and differences left to right."""
    terms, signs = [numbers[0]], []
    for operator, number in zip(operators, numbers[1:], strict=True):
        if operator == "*":
            terms[-1] *= number
        else:
            terms.append(number)
            signs.append(1 if operator == "+" else -1)
    return terms[0] + sum(sign * term for sign, term in zip(signs, terms[1:], strict=True))


def _expression_text(numbers: tuple[int, ...], operators: tuple[str, ...]) -> str:
    tokens = [str(numbers[0])]
    for operator, number in zip(operators, numbers[1:], strict=True):
        tokens += [operator, str(number)]
    return " ".join(tokens)


def countdown_text(numbers: Sequence[int], target: int, expression: str | None = None) -> str:
    """ "3 7 2 to 23 : 3 * 7 + 2", or without an expression the prompt "3 7 2 to 23 :"."""
    prompt = f"{' '.join(str(n) for n in numbers)} to {target} :"
    return prompt if expression is None else f"{prompt} {expression}"


def countdown_problems() -> dict[Problem, list[str]]:
    """Every problem (3 sorted digits in 1..9, positive target) -> its valid expressions, sorted.

    An expression uses each number once with two operators of ``OPERATORS``, no parentheses.
    There are 1386 problems and 4924 (problem, expression) pairs.
    """
    problems: dict[Problem, set[str]] = {}
    for numbers in itertools.combinations_with_replacement(range(1, 10), 3):
        for ordered in set(itertools.permutations(numbers)):
            for operators in itertools.product(OPERATORS, repeat=2):
                target = _value(ordered, operators)
                if target > 0:
                    expressions = problems.setdefault((numbers, target), set())
                    expressions.add(_expression_text(ordered, operators))
    return {problem: sorted(problems[problem]) for problem in sorted(problems)}


def countdown(test_fraction: float = 0.1, n_queries: int = 200, seed: int = 0) -> SyntheticTask:
    """Countdown with 3 digits: reach the target with ``+ - *`` and each number once.

    All 1386 problems (:func:`countdown_problems`) are shuffled by ``seed`` and ``test_fraction``
    of them are held out (139 at 0.1): no training document states a held-out problem's numbers
    and target. Training text is one document per (training problem, valid expression), the
    numbers shown in a random order (:func:`countdown_text`): 4432 documents at the defaults, of
    at most 13 tokens with a word-level tokenizer. Test documents are the same for held-out
    problems.

    Query ``answer``: (prompt "3 7 2 to 23 :", one valid expression) for up to ``n_queries``
    held-out problems; evaluation fills a 5-token slot after the prompt and any valid expression
    counts (``llada.data.rewards.countdown``). ``train_queries["answer"]``: the same for every
    training problem.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"countdown: test_fraction must be in (0, 1), got {test_fraction}")
    if n_queries < 1:
        raise ValueError(f"countdown: n_queries must be >= 1, got {n_queries}")
    problems = countdown_problems()
    rng = random.Random(seed)
    order = rng.sample(sorted(problems), len(problems))
    n_test = max(1, round(len(order) * test_fraction))
    held_out, trained = order[:n_test], order[n_test:]

    def documents(chosen: list[Problem]) -> list[str]:
        texts = [
            countdown_text(rng.sample(numbers, len(numbers)), target, expression)
            for numbers, target in chosen
            for expression in problems[numbers, target]
        ]
        rng.shuffle(texts)
        return texts

    def queries(chosen: list[Problem]) -> list[Query]:
        return [
            (
                countdown_text(rng.sample(numbers, len(numbers)), target),
                rng.choice(problems[numbers, target]),
            )
            for numbers, target in chosen
        ]

    train, test = documents(trained), documents(held_out)
    return SyntheticTask(
        train=train,
        test=test,
        queries={"answer": queries(held_out[:n_queries])},
        train_queries={"answer": queries(trained)},
    )


TASKS: dict[str, Callable[..., SyntheticTask]] = {
    "reversal": reversal,
    "sudoku": sudoku,
    "countdown": countdown,
}


def synthetic_documents(task: str, split: str = "train", **options: object) -> list[str]:
    """Corpus callable: the ``split`` ("train" or "test") documents of task ``task``."""
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; expected one of: {', '.join(TASKS)}")
    generated = TASKS[task](**options)
    splits = {"train": generated.train, "test": generated.test}
    if split not in splits:
        raise ValueError(f"unknown split {split!r} of task {task!r}; expected train or test")
    return splits[split]
