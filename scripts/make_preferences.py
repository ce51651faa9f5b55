"""Preference pairs (jsonl) from a model's own samples on a synthetic task, for objective=vrpo.

    python scripts/make_preferences.py --ckpt outputs/countdown/checkpoints/last.ckpt \
        --task countdown --out outputs/countdown/preferences.jsonl [--samples 4] [--limit 2000]

Chosen: a sample the task's reward calls right (else the reference answer); rejected: a wrong
sample. Only training queries are used (`llada.preference_builder`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--task", default="countdown")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--limit", type=int, default=None, help="first N training queries")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from llada.preference_builder import preferences_from_samples, write_jsonl
    from llada.text_model import load_text_model

    model = load_text_model(args.ckpt)
    corpus = dict(model.data_config["corpus"])
    if corpus.get("task") != args.task:
        raise SystemExit(
            f"{args.ckpt} was trained on task {corpus.get('task')!r}, not {args.task!r}"
        )
    options = {
        k: v for k, v in corpus.items() if not k.startswith("_") and k not in ("task", "split")
    }
    rows = preferences_from_samples(
        model, args.task, samples=args.samples, temperature=args.temperature, limit=args.limit,
        seed=args.seed, **options,
    )  # fmt: skip
    write_jsonl(rows, args.out)
    sampled = sum(row["chosen_is_sample"] for row in rows)
    print(f"{len(rows)} pairs ({sampled} with a sampled chosen answer) written to {args.out}")


if __name__ == "__main__":
    main()
