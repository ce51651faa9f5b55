"""Sampling speed and quality of each remasking strategy on a trained checkpoint.

    python scripts/bench_remasking.py CKPT [--samples 16] [--n-tokens 64] [--out scripts/results]

Per strategy: forward passes (NFE), tokens/s, and two quality figures of the generated text:
distinct-2 (share of unique bigrams; degenerate repetition scores low) and the model's own
conditional log-likelihood bound per token (LLaDA eq. 6; higher = more typical under the model,
which also rewards repetition, so read the two together). A judge LM is the next step (issue 7).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from llada import DiffusionLM

STRATEGIES = [
    ("low_confidence", {}, {"block_length": None}),  # LLaDA reference: pure diffusion order
    ("low_confidence", {}, {}),  # the run's default: blocks of 4
    ("low_confidence", {}, {"kv_cache": True}),  # + approximate prefix KV cache
    ("low_confidence", {}, {"block_length": 16}),
    ("low_confidence", {}, {"block_length": 16, "kv_cache": True}),
    ("random", {}, {}),
    ("margin", {}, {}),
    ("entropy", {}, {}),
    ("remdm", {"sigma": 0.25}, {}),
    ("low_confidence", {}, {"steps": 16}),  # 4 tokens per step
    ("threshold", {"threshold": 0.9}, {"steps": 16}),
    ("threshold", {"threshold": 0.5}, {"steps": 16}),
    ("threshold", {"threshold": 0.3}, {"steps": 16}),
]
PROMPTS = ["The return statement", "A class definition", "If the object", "The import system"]


def distinct_2(token_rows: list[list[int]]) -> float:
    bigrams = [tuple(row[i : i + 2]) for row in token_rows for i in range(len(row) - 1)]
    return len(set(bigrams)) / max(1, len(bigrams))


def bench(model: DiffusionLM, samples: int, n_tokens: int, steps: int) -> list[dict]:
    rows = []
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(samples)]
    for name, options, overrides in STRATEGIES:
        settings = {"steps": steps, "remasking": name, "remasking_options": options, **overrides}
        model.generate_with_info(prompts[:1], n_tokens, seed=0, **settings)  # warm-up
        started = time.perf_counter()
        out = model.generate_with_info(prompts, n_tokens, seed=0, **settings)
        wall = time.perf_counter() - started
        tokens = out.tokens.tolist()
        answers = [t if t.strip() else "." for t in out.texts]
        loglik = model.log_likelihood(prompts, answers, mc_samples=16, batch_size=16, seed=0)
        n_answer = [len(model.tokenizer.encode(a, add_special_tokens=False)) for a in answers]
        per_token = float((loglik / torch.tensor(n_answer).clamp_min(1)).mean())
        rows.append(
            {
                "remasking": name,
                "options": options,
                "block_length": settings.get("block_length", model.generation.block_length),
                "steps": settings["steps"],
                "kv_cache": settings.get("kv_cache", False),
                "nfe_per_batch": out.nfe,
                "tokens_per_second": round(out.tokens.numel() / wall, 1),
                "distinct_2": round(distinct_2(tokens), 3),
                "self_loglik_per_token": round(per_token, 3),
                "example": out.texts[0][:160],
            }
        )
        print(json.dumps(rows[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--n-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--out", default="scripts/results")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = DiffusionLM.load_from_checkpoint(args.ckpt)
    rows = bench(model, args.samples, args.n_tokens, args.steps)
    machine = {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
               "platform": platform.platform()}  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"ckpt": args.ckpt, "machine": machine, "samples": args.samples, "rows": rows}
    (out / "bench_remasking.json").write_text(json.dumps(result, indent=2) + "\n")
    header = (
        "| remasking | options | block | steps | kv cache | NFE | tokens/s | distinct-2 "
        "| self log-lik/token |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['remasking']} | {r['options'] or ''} | {r['block_length']} | {r['steps']} | {r['kv_cache']} | "
            f"{r['nfe_per_batch']} | {r['tokens_per_second']} | {r['distinct_2']} | "
            f"{r['self_loglik_per_token']} |"
        )
    (out / "bench_remasking.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
