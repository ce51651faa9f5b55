"""Value rules with one-line messages, shared by the config schemas and `GenerationSettings`.

A rule says whether a value is allowed and describes what is, so every rejected value gives the same
kind of message: `sampler.top_p=1.5 is out of range: allowed 0 < top_p <= 1 or null`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Protocol


def show(value: Any) -> str:
    """A value as it is written on the command line (null, true, 1.5, text)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        text = repr(value)
        return text.removesuffix(".0")
    return repr(value) if value == "" else str(value)


# ------------------------------------------------------------------------------------------ rules
class Rule(Protocol):
    problem: str  # what the message says a rejected value is, e.g. "is out of range"

    def allows(self, value: Any) -> bool: ...

    def describe(self, name: str) -> str: ...


KIND_NAMES: dict[type, str] = {int: "integer", float: "number"}


@dataclass(frozen=True)
class Range:
    """low <= value <= high, either bound open or absent; `kind` also demands int or float."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    kind: type | None = None
    problem: str = "is out of range"

    def allows(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind or (int, float)):
            return False
        above = self.low is None or (operator.gt if self.low_open else operator.ge)(value, self.low)
        below = self.high is None or (operator.lt if self.high_open else operator.le)(
            value, self.high
        )
        return above and below

    def describe(self, name: str) -> str:
        kind = f"{KIND_NAMES[self.kind]} " if self.kind else ""
        if self.high is None and self.low is not None:  # "steps >= 1", not "1 <= steps"
            return f"{kind}{name} {'>' if self.low_open else '>='} {show(self.low)}"
        low = "" if self.low is None else f"{show(self.low)} {'<' if self.low_open else '<='} "
        high = "" if self.high is None else f" {'<' if self.high_open else '<='} {show(self.high)}"
        return f"{kind}{low}{name}{high}"


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values (strategy names, modes)."""

    options: tuple[Any, ...]
    problem: str = "is not an option"

    def allows(self, value: Any) -> bool:
        return value in self.options

    def describe(self, name: str) -> str:
        if len(self.options) == 1:
            return f"{name}={show(self.options[0])}"
        return "one of " + ", ".join(show(option) for option in self.options)


@dataclass(frozen=True)
class AnyOf:
    """Any of several rules, e.g. a step count or a fraction of an epoch."""

    rules: tuple[Rule, ...]
    problem: str = "is out of range"

    def allows(self, value: Any) -> bool:
        return any(rule.allows(value) for rule in self.rules)

    def describe(self, name: str) -> str:
        return " or ".join(rule.describe(name) for rule in self.rules)


def option(default: Any, check: Rule | None = None) -> Any:
    """A schema field whose value must also pass `check` (null passes where the type allows it)."""
    return field(default=default, metadata={"check": check} if check else {})


def invalid(key: str, value: Any, problem: str, allowed: str) -> ValueError:
    """The one-line error every check raises."""
    return ValueError(f"{key}={show(value)} {problem}: allowed {allowed}")
