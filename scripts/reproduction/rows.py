"""The registry of scripts/reproduce.py's rows: how each is run, judged, plotted and counted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproduction.benchmarks import BENCHMARKS, judge_benchmarks, run_benchmarks
from reproduction.common import Context
from reproduction.data_constrained import (
    judge_data_constrained,
    plot_data_constrained,
    run_data_constrained,
)
from reproduction.planning import judge_planning, plot_planning, run_planning
from reproduction.reversal import judge_reversal, plot_reversal, run_reversal


@dataclass(frozen=True)
class Row:
    """A row of the report: how to measure it, how to judge it, how to plot it (None: no plot),
    and how many progress steps it takes in a mode."""

    title: str
    run: Callable[[Context], dict[str, Any]]
    judge: Callable[[dict[str, Any]], list[dict[str, str]]]
    plot: Callable[[dict[str, Any], Path], None] | None
    steps: Callable[[dict[str, dict[str, int]]], int]


ROWS: dict[str, Row] = {
    "data-constrained": Row(
        "Data-constrained training: MDM vs AR on repeated data",
        run_data_constrained, judge_data_constrained, plot_data_constrained,
        lambda plan: 2 * plan["seeds"]["shakespeare"] + 1,
    ),
    "planning": Row(
        "Sudoku and Countdown: MDM vs AR; decoding order on Sudoku",
        run_planning, judge_planning, plot_planning,
        lambda plan: 2 * plan["seeds"]["countdown"] + 3 * plan["seeds"]["sudoku"],
    ),
    "reversal": Row(
        "Reversal: facts learned one way, asked both ways",
        run_reversal, judge_reversal, plot_reversal,
        lambda plan: 2 * plan["seeds"]["reversal"],
    ),
    "benchmarks": Row(
        "Other results, from the committed benchmark JSONs",
        run_benchmarks, judge_benchmarks, None,
        lambda plan: len(BENCHMARKS),
    ),
}  # fmt: skip
