"""Exact-match accuracy on the synthetic tasks' held-out queries, for diffusion and AR models alike.

Every query becomes a template with `[MASK]xN` where the answer goes (N = the answer's token
count, given to both kinds of model) and the expected full text. Both models fill templates with
`infill_with_info` and greedy choice: the diffusion model in any order with the text on both
sides, the AR baseline in reading order from the text to the left (its only option).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from llada.atomic import atomic_write
from llada.data.synthetic import BLANK, TASKS
from llada.module import MASK_SLOT, DiffusionLM

Query = tuple[str, str]
Template = tuple[str, str]  # (text with [MASK]xN slots, the expected filled text)


def answer_slot(query: Query, answer_tokens: int) -> Template:
    """(prompt, answer) -> the answer after the prompt; a text with `{answer}` puts it there."""
    text, answer = query
    slot = f"[MASK]x{answer_tokens}"
    if "{answer}" in text:
        return text.replace("{answer}", slot), text.replace("{answer}", answer)
    return f"{text} {slot}", f"{text} {answer}"


def blank_cells(query: Query, answer_tokens: int) -> Template:
    """(puzzle, solution) -> every blank cell a one-token slot; the solution is the whole grid."""
    puzzle, solution = query
    return " ".join("[MASK]" if cell == BLANK else cell for cell in puzzle.split()), solution


# How each task's queries become templates (the answer count is computed from the tokenizer).
TEMPLATE_BUILDERS: dict[str, Callable[[Query, int], Template]] = {
    "reversal": answer_slot,
    "sudoku": blank_cells,
}


def normalized(model: DiffusionLM, text: str) -> str:
    """The text as the model's tokenizer writes it back (spacing around punctuation and all)."""
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    return model.tokenizer.decode(ids, skip_special_tokens=True).strip()


def exact_match(
    model: DiffusionLM, task: str, queries: list[Query], batch_size: int = 64
) -> tuple[float, list[dict[str, Any]]]:
    """Fraction of queries whose filled template equals the expected text, and one record each."""
    build = TEMPLATE_BUILDERS[task]
    records = []
    for first in range(0, len(queries), batch_size):
        chunk = queries[first : first + batch_size]
        pairs = [
            build(query, len(model.tokenizer.encode(query[1], add_special_tokens=False)))
            for query in chunk
        ]
        templates = [template for template, _ in pairs]
        steps = max(_slots(template) for template in templates)
        filled = model.infill_with_info(
            templates, sampler="greedy", remasking="low_confidence", steps=steps, seed=0
        ).texts
        for (template, expected), text in zip(pairs, filled, strict=True):
            target = normalized(model, expected)
            records.append(
                {
                    "template": template,
                    "expected": target,
                    "output": text,
                    "correct": text == target,
                }
            )
    accuracy = sum(r["correct"] for r in records) / max(len(records), 1)
    return accuracy, records


def _slots(template: str) -> int:
    """Mask tokens in a template: one step per token (one token committed per forward pass)."""
    return sum(int(match.group(1) or 1) for match in MASK_SLOT.finditer(template))


def task_accuracy(
    model: DiffusionLM,
    task: str,
    limit: int | None = None,
    batch_size: int = 64,
    **task_options: Any,
) -> dict[str, Any]:
    """Exact-match accuracy per query kind of synthetic task `task` (generated with its options).

    Returns {"accuracy": {kind: float}, "n": {kind: int}, "records": {kind: [...]}}.
    """
    if task not in TEMPLATE_BUILDERS:
        raise ValueError(f"no evaluation for task {task!r}; expected one of: {', '.join(TASKS)}")
    generated = TASKS[task](**task_options)
    result: dict[str, Any] = {"accuracy": {}, "n": {}, "records": {}}
    for kind, queries in generated.queries.items():
        chosen = queries[:limit] if limit else queries
        with torch.no_grad():
            accuracy, records = exact_match(model, task, chosen, batch_size)
        result["accuracy"][kind], result["n"][kind] = accuracy, len(chosen)
        result["records"][kind] = records
    return result


class TaskAccuracy(L.Callback):
    """At the end of training: exact-match accuracy on the synthetic task the run trained on.

    Reads the task and its options from the run's `data.corpus` (a `synthetic_documents`
    corpus), writes `task_accuracy.json` in the run directory and logs `task/<kind>` metrics.
    """

    def __init__(self, corpus: DictConfig | dict, path: str, limit: int | None = None) -> None:
        options = (
            OmegaConf.to_container(corpus, resolve=True)
            if OmegaConf.is_config(corpus)
            else dict(corpus)
        )
        self.task = str(options.pop("task"))
        self.options = {k: v for k, v in options.items() if not k.startswith("_") and k != "split"}
        self.path, self.limit = Path(path), limit
        self.result: dict[str, Any] = {}

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.result = task_accuracy(pl_module, self.task, limit=self.limit, **self.options)
        summary = {
            "task": self.task,
            "lm": pl_module.lm_kind,
            "step": trainer.global_step,
            "accuracy": self.result["accuracy"],
            "n": self.result["n"],
            "examples": {kind: records[:5] for kind, records in self.result["records"].items()},
        }
        with atomic_write(self.path, "w") as handle:
            json.dump(summary, handle, indent=2)
        metrics = {f"task/{kind}": value for kind, value in self.result["accuracy"].items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        print(
            f"task accuracy ({self.task}, {pl_module.lm_kind}): {json.dumps(self.result['accuracy'])}"
        )
