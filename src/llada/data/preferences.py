"""`data=preferences`: (prompt, chosen, rejected) rows for preference optimisation (VRPO).

Records come from `.jsonl` files, one `{"prompt": ..., "chosen": ..., "rejected": ...}` object a
line (field names configurable); chosen and rejected are answers that follow the prompt. Each
answer becomes a row prompt + answer + EOS with the prompt given (`llada.data.rows.answer_row`);
both rows of a pair share one width. `scripts/make_preferences.py` (`llada.preference_builder`) writes such files from a model's own
samples on a synthetic task (chosen: a correct answer, rejected: one of its wrong ones).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from llada.data.rows import Row, RowsDataModule, answer_row, padded

Preference = tuple[str, str, str]  # prompt, chosen, rejected


def read_preferences(
    path: str, prompt_field: str = "prompt", chosen_field: str = "chosen",
    rejected_field: str = "rejected",
) -> list[Preference]:  # fmt: skip
    """Every record of a jsonl file; a bad line is a one-line error naming it and the fix."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"data.path={path} does not exist (a .jsonl of preference pairs)")
    names = (prompt_field, chosen_field, rejected_field)
    records = []
    for number, line in enumerate(source.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"data.path={path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} is not JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where} is not a JSON object")
        missing = [name for name in names if not isinstance(record.get(name), str)]
        if missing:
            raise ValueError(
                f"{where} has no string {', '.join(map(repr, missing))}; a preference row needs "
                f"{', '.join(map(repr, names))} (or set data.prompt_field / chosen_field / "
                "rejected_field)"
            )
        records.append((record[prompt_field], record[chosen_field], record[rejected_field]))
    if not records:
        raise ValueError(f"data.path={path} holds no preference rows")
    return records


class PreferenceDataModule(RowsDataModule):
    """Pairs of rows (`chosen_*`, `rejected_*`) from a jsonl file of preferences."""

    def __init__(
        self,
        path: str,
        prompt_field: str = "prompt",
        chosen_field: str = "chosen",
        rejected_field: str = "rejected",
        **rows: Any,
    ) -> None:
        super().__init__(**rows)
        self.path, self.fields = path, (prompt_field, chosen_field, rejected_field)
        self._records: list[Preference] | None = None

    def examples(self) -> list[Preference]:
        if self._records is None:
            self._records = read_preferences(self.path, *self.fields)
        return self._records

    def encode(self, examples: list[Preference], tokenizer: PreTrainedTokenizerBase) -> list[Row]:
        pairs = [
            (answer_row(tokenizer, prompt, chosen), answer_row(tokenizer, prompt, rejected))
            for prompt, chosen, rejected in examples
        ]
        width = max(len(row["input_ids"]) for pair in pairs for row in pair)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_id
        return [
            {**padded(chosen, width, pad, "chosen_"), **padded(rejected, width, pad, "rejected_")}
            for chosen, rejected in pairs
        ]
