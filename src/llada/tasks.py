"""Exact-match accuracy on the synthetic tasks' held-out queries, for diffusion and AR models alike.

Every query becomes a template with `[MASK]xN` where the answer goes (N = the answer's token
count, given to both kinds of model) and the expected full text. Both models fill templates with
`infill_with_info` and greedy choice: the diffusion model in any order with the text on both
sides, the AR baseline in reading order from the text to the left (its only option).

A filled template is correct if it equals the expected text or, for a task with many right
answers (countdown), if the task's verifiable reward says so (`JUDGES`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from llada.atomic import atomic_write
from llada.data import rewards
from llada.data.synthetic import BLANK, TASKS
from llada.generation import MASK_SLOT
from llada.module import DiffusionLM

Query = tuple[str, str]
Template = tuple[str, str]  # (text with [MASK]xN slots, the expected filled text)


def answer_slot(query: Query, answer_tokens: int) -> Template:
    """(prompt, answer) -> the fact's sentence "{prompt} {answer}." with the answer as the slot.

    A text with `{answer}` puts it there. The full stop is part of the sentence as trained: it
    tells a bidirectional model that the slot ends the fact (the AR never sees it before filling).
    """
    text, answer = query
    if "{answer}" not in text:
        text = f"{text} {{answer}}."
    return text.replace("{answer}", f"[MASK]x{answer_tokens}"), text.replace("{answer}", answer)


def blank_cells(query: Query, answer_tokens: int) -> Template:
    """(puzzle, solution) -> every blank cell a one-token slot; the solution is the whole grid."""
    puzzle, solution = query
    return " ".join("[MASK]" if cell == BLANK else cell for cell in puzzle.split()), solution


def answer_after(query: Query, answer_tokens: int) -> Template:
    """(prompt, answer) -> a slot right after the prompt, "3 7 2 to 23 : [MASK]x5": no full stop,
    as the trained text has none."""
    prompt, answer = query
    return f"{prompt} [MASK]x{answer_tokens}", f"{prompt} {answer}"


# How each task's queries become templates (the answer count is computed from the tokenizer).
TEMPLATE_BUILDERS: dict[str, Callable[[Query, int], Template]] = {
    "reversal": answer_slot,
    "sudoku": blank_cells,
    "countdown": answer_after,
}


def same_text(output: str, expected: str) -> bool:
    """The default judge: the filled text is the expected one."""
    return output == expected


def countdown_correct(output: str, expected: str) -> bool:
    """Any expression that reaches the target with the given numbers, not only the reference."""
    return rewards.countdown(output, expected) == 1.0


# Whether a filled template (output) is right, per task; tasks not listed use `same_text`.
JUDGES: dict[str, Callable[[str, str], bool]] = {"countdown": countdown_correct}


def normalized(model: DiffusionLM, text: str) -> str:
    """The text as the model's tokenizer writes it back (spacing around punctuation and all)."""
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    return model.tokenizer.decode(ids, skip_special_tokens=True).strip()


def exact_match(
    model: DiffusionLM,
    task: str,
    queries: list[Query],
    batch_size: int = 64,
    settings: Mapping[str, Any] | None = None,
) -> tuple[float, list[dict[str, Any]]]:
    """Fraction of queries whose filled template equals the expected text (or that the task's
    judge in `JUDGES` accepts), and one record each (with its forward passes, `nfe`). Default
    decoding: greedy, low_confidence, one token per step; `settings` (generation keys) change it,
    e.g. a threshold rule."""
    build = TEMPLATE_BUILDERS[task]
    judge = JUDGES.get(task, same_text)
    records = []
    for first in range(0, len(queries), batch_size):
        chunk = queries[first : first + batch_size]
        pairs = [
            build(query, len(model.tokenizer.encode(query[1], add_special_tokens=False)))
            for query in chunk
        ]
        templates = [template for template, _ in pairs]
        steps = max(_slots(template) for template in templates)
        options = {"sampler": "greedy", "remasking": "low_confidence", "steps": steps}
        out = model.infill_with_info(templates, seed=0, **{**options, **(settings or {})})
        for (template, expected), text, nfe in zip(pairs, out.texts, out.sample_nfe, strict=True):
            target = normalized(model, expected)
            records.append(
                {
                    "template": template,
                    "expected": target,
                    "output": text,
                    "correct": judge(text, target),
                    "nfe": nfe,
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
    settings: Mapping[str, Any] | None = None,
    **task_options: Any,
) -> dict[str, Any]:
    """Exact-match accuracy per query kind of synthetic task `task` (generated with its options),
    decoded as `exact_match` does (or with `settings`).

    Returns {"accuracy": {kind: float}, "n": {kind: int}, "nfe": {kind: mean forward passes per
    query}, "records": {kind: [...]}}.
    """
    if task not in TEMPLATE_BUILDERS:
        raise ValueError(f"no evaluation for task {task!r}; expected one of: {', '.join(TASKS)}")
    generated = TASKS[task](**task_options)
    result: dict[str, Any] = {"accuracy": {}, "n": {}, "nfe": {}, "records": {}}
    for kind, queries in generated.queries.items():
        chosen = queries[:limit] if limit else queries
        with torch.no_grad():
            accuracy, records = exact_match(model, task, chosen, batch_size, settings)
        result["accuracy"][kind], result["n"][kind] = accuracy, len(chosen)
        result["nfe"][kind] = sum(r["nfe"] for r in records) / max(len(records), 1)
        result["records"][kind] = records
    return result


# Where the masked span sits in a held-out window: its first column for a window and span width.
SPAN_STARTS: dict[str, Callable[[int, int], int]] = {
    "start": lambda window, span: 0,
    "middle": lambda window, span: (window - span) // 2,
    "end": lambda window, span: window - span,
}


def span_infill_accuracy(
    model: DiffusionLM, windows: Tensor, span: int, batch_size: int = 64
) -> dict[str, Any]:
    """Mask `span` tokens at the start, middle and end of held-out windows (N, W) and fill them.

    Returns {"accuracy": {where: exact-match rate of the span}, "token_accuracy": {where: rate},
    "n": {where: N}}. Greedy, one token per step; the AR fills from the left context only.
    """
    n_rows, width = windows.shape
    if not 1 <= span < width:
        raise ValueError(f"span={span} must be in [1, window={width})")
    result: dict[str, Any] = {"accuracy": {}, "token_accuracy": {}, "n": {}}
    for where, first_column in SPAN_STARTS.items():
        first = first_column(width, span)
        masked = windows.clone()
        masked[:, first : first + span] = model.mask_id
        hits = []
        for row in range(0, n_rows, batch_size):
            rows = masked[row : row + batch_size].tolist()
            out = model.infill_ids(rows, sampler="greedy", remasking="low_confidence", steps=span)
            filled = out.tokens[:, -width:]  # (b, W): the window, after any start token
            truth = windows[row : row + batch_size]
            hits.append(filled[:, first : first + span] == truth[:, first : first + span])
        correct = torch.cat(hits)  # (N, span) bool
        result["accuracy"][where] = correct.all(dim=1).float().mean().item()
        result["token_accuracy"][where] = correct.float().mean().item()
        result["n"][where] = n_rows
    return result


class HeldOutAccuracy(L.Callback):
    """At the end of training, score held-out queries; write `path` (JSON) and log `task/*`."""

    name = "held_out"

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.result: dict[str, Any] = {}

    def evaluate(self, trainer: L.Trainer, pl_module: DiffusionLM) -> dict[str, Any]:
        raise NotImplementedError

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        with torch.no_grad():
            self.result = self.evaluate(trainer, pl_module)
        summary = {"task": self.name, "lm": pl_module.lm_kind, "step": trainer.global_step}
        summary.update(self.result)
        with atomic_write(self.path, "w") as handle:
            json.dump(summary, handle, indent=2)
        metrics = {f"task/{kind}": value for kind, value in self.result["accuracy"].items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        accuracy = json.dumps({k: round(v, 3) for k, v in self.result["accuracy"].items()})
        print(f"task accuracy ({self.name}, {pl_module.lm_kind}): {accuracy}")


class TaskAccuracy(HeldOutAccuracy):
    """Exact-match accuracy on the synthetic task the run trained on (`data.corpus`'s task)."""

    def __init__(self, corpus: DictConfig | dict, path: str, limit: int | None = None) -> None:
        super().__init__(path)
        options = (
            OmegaConf.to_container(corpus, resolve=True)
            if OmegaConf.is_config(corpus)
            else dict(corpus)
        )
        self.name = str(options.pop("task"))
        self.options = {k: v for k, v in options.items() if not k.startswith("_") and k != "split"}
        self.limit = limit

    def evaluate(self, trainer: L.Trainer, pl_module: DiffusionLM) -> dict[str, Any]:
        result = task_accuracy(pl_module, self.name, limit=self.limit, **self.options)
        examples = {kind: records[:5] for kind, records in result.pop("records").items()}
        return {**result, "examples": examples}


class SpanInfillAccuracy(HeldOutAccuracy):
    """Spans masked at the start, middle and end of validation windows of the run's own data."""

    name = "span_infill"

    def __init__(self, path: str, n_windows: int = 128, window: int = 32, span: int = 4) -> None:
        super().__init__(path)
        self.n_windows, self.window, self.span = n_windows, window, span

    def evaluate(self, trainer: L.Trainer, pl_module: DiffusionLM) -> dict[str, Any]:
        rows, seen = [], 0
        for batch in trainer.datamodule.val_dataloader():
            blocks = batch["input_ids"]  # (b, L) packed: all real tokens
            if blocks.shape[1] < self.window:
                raise ValueError(f"window={self.window} is longer than data.block_size")
            usable = blocks.shape[1] // self.window * self.window
            rows.append(blocks[:, :usable].reshape(-1, self.window))  # (b * L // W, W)
            seen += rows[-1].shape[0]
            if seen >= self.n_windows:
                break
        windows = torch.cat(rows)[: self.n_windows].to(pl_module.device)  # (N, W)
        return {**span_infill_accuracy(pl_module, windows, self.span), "span": self.span}
