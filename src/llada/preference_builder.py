"""Preference pairs from a model's own samples on a synthetic task (data for `objective=vrpo`).

For each TRAINING query (`train_queries`: held-out ones are never used) the model fills the
answer slot `samples` times by sampling; the task's verifiable reward (`rewards.TASK_REWARDS`)
splits the samples into right and wrong. A pair is (prompt, chosen, rejected) with chosen a right
sample (or the reference answer when none was right) and rejected one of the wrong samples; a
query the model always gets right gives no pair (nothing to prefer against). Only tasks whose
answer follows the prompt (countdown, reversal) fit the (prompt, answer) form of the data.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from llada.atomic import atomic_write
from llada.data.rewards import TASK_REWARDS
from llada.data.synthetic import TASKS

SUFFIX_TASKS = {"countdown": "answer", "reversal": "forward"}  # the task and its query kind


def preferences_from_samples(
    model: Any,
    task: str,
    *,
    samples: int = 4,
    temperature: float = 1.0,
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    **task_options: Any,
) -> list[dict[str, str]]:
    """Rows {"prompt", "chosen", "rejected", "chosen_is_sample"} from `model` (a TextAPI)."""
    from llada.tasks import TEMPLATE_BUILDERS, _slots, normalized

    if task not in SUFFIX_TASKS:
        raise ValueError(
            f"task={task!r}: preference rows are answers that follow a prompt; use one of: "
            f"{', '.join(SUFFIX_TASKS)}"
        )
    if samples < 2:
        raise ValueError(
            f"samples={samples}: need at least 2 samples per query to find a wrong one"
        )
    queries = TASKS[task](**task_options).train_queries[SUFFIX_TASKS[task]]
    queries = queries[:limit] if limit else queries
    reward, build, rng = TASK_REWARDS[task], TEMPLATE_BUILDERS[task], random.Random(seed)
    rows = []
    for first in range(0, len(queries), batch_size):
        chunk = queries[first : first + batch_size]
        pairs = [
            build(q, len(model.tokenizer.encode(q[1], add_special_tokens=False))) for q in chunk
        ]
        templates = [template for template, _ in pairs for _ in range(samples)]
        out = model.infill_with_info(
            templates, seed=seed + first, sampler="multinomial", temperature=temperature,
            remasking="low_confidence", steps=max(_slots(t) for t in templates),
        )  # fmt: skip
        for index, (query, (_, expected)) in enumerate(zip(chunk, pairs, strict=True)):
            prompt = normalized(model, query[0])
            answers = out.texts[index * samples : (index + 1) * samples]
            right = [a for a in answers if reward(a, normalized(model, expected)) >= 1.0]
            wrong = [a for a in answers if a not in right]
            if not wrong:
                continue
            chosen = right[0] if right else normalized(model, expected)
            rows.append({
                "prompt": prompt,
                "chosen": chosen.removeprefix(prompt).strip(),
                "rejected": rng.choice(wrong).removeprefix(prompt).strip(),
                "chosen_is_sample": bool(right),
            })  # fmt: skip
    return rows


def write_jsonl(rows: list[dict[str, Any]], path: str | Path) -> None:
    """One JSON object a line, written atomically (an earlier file stays whole until replaced)."""
    with atomic_write(Path(path), "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
