"""`data=task_prompts`: a synthetic task's training queries as rows to roll out (GRPO).

Each query becomes the template the task's evaluation fills (`llada.tasks.TEMPLATE_BUILDERS`:
a puzzle's blanks, an answer slot after a prompt) and its expected text, encoded as one row: the
given tokens, and the completion positions holding the reference answer (what the reward compares
with). Only `train_queries` are used (puzzles over training grids, training problems); the held-out
`queries` stay for `llada.tasks.TaskAccuracy`, never rolled out on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import PreTrainedTokenizerBase

from llada.data.rows import Row, RowsDataModule, padded, template_row
from llada.data.synthetic import TASKS, Query


class TaskPromptsDataModule(RowsDataModule):
    """Rows of a task's training queries of kind `kind`; `corpus` is {task, its options} as
    `data=sudoku` etc. give it (so `llada.tasks.TaskAccuracy` reads the same node)."""

    def __init__(self, corpus: Mapping[str, Any], kind: str, **rows: Any) -> None:
        super().__init__(**rows)
        options = {k: v for k, v in dict(corpus).items() if not str(k).startswith("_")}
        task = str(options.pop("task", None))
        options.pop("split", None)
        if task not in TASKS:
            raise ValueError(
                f"data.corpus.task={task!r} is unknown; expected one of: {', '.join(TASKS)}"
            )
        self.task, self.kind, self.task_options = task, kind, options
        self._queries: list[Query] | None = None

    def examples(self) -> list[Query]:
        if self._queries is None:
            generated = TASKS[self.task](**self.task_options)
            if self.kind not in generated.train_queries:
                known = ", ".join(generated.train_queries) or "none"
                raise ValueError(
                    f"data.kind={self.kind!r}: task {self.task} has no training queries of that "
                    f"kind; it has: {known}"
                )
            self._queries = list(generated.train_queries[self.kind])
        return self._queries

    def encode(self, examples: list[Query], tokenizer: PreTrainedTokenizerBase) -> list[Row]:
        from llada.tasks import TEMPLATE_BUILDERS  # the evaluation's own template per task

        build = TEMPLATE_BUILDERS[self.task]
        rows = []
        for query in examples:
            answer_tokens = len(tokenizer.encode(query[1], add_special_tokens=False))
            template, filled = build(query, answer_tokens)
            rows.append(template_row(tokenizer, template, filled))
        width = max(len(row["input_ids"]) for row in rows)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_id
        return [padded(row, width, pad) for row in rows]
