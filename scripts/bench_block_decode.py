"""Decoding 256 new tokens: block diffusion's exact KV cache against the MDM's block decoding.

    python scripts/bench_block_decode.py [--runs DIR] [--reuse | --train-only] [--samples 8]
                                         [--repeats 3] [--new-tokens 256]

Trains (or, with --reuse, reads) three models of the same size on the default corpus with a
320-token context through `llada.train`: LLaDA's MDM, objective=bd3 with blocks of 16, and the
AR baseline as the judge. Then, each setting in a fresh process (clean peak memory), decodes
`--samples` continuations of 256 tokens (multinomial, EOS forbidden so every row has 256 new
tokens) at the same plan: blocks of 16, one token per step, 256 forward passes (NFE):
- mdm: semi-autoregressive blocks, no cache (every step runs the whole canvas);
- mdm + prefix cache: Fast-dLLM's approximate cache of the positions before the block;
- mdm + dual cache: Fast-dLLM's DualCache, the still-masked suffix cached too (only the block runs);
- bd3: the exact cache (each step runs the 16-token block against cached keys);
- bd3 without cache: the same model recomputing the window every step.
Reports tokens/s (median and spread over --repeats timed runs after a warm-up), NFE, peak RSS,
and quality: the judge's perplexity of the samples. Writes bench_block_decode.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["The return statement", "A class definition", "If the object", "The import system"]
NEW_TOKENS, BLOCK = 256, 16
TRAIN = [
    "experiment=quick", "data.block_size=320", "data.batch_size=8", "trainer.max_steps=400",
    "trainer.val_check_interval=200", "callbacks.samples.num_samples=0",
    "callbacks.samples.prompts=[]", "trainer.enable_progress_bar=false",
]  # fmt: skip
MODELS = {
    "mdm": [],
    "bd3": ["objective=bd3", f"objective.block_size={BLOCK}"],
    "ar": ["model=ar_tiny"],
}
MDM_PLAN = {"block_length": BLOCK}  # and steps = new tokens: one token per step
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "mdm (no cache)": ("mdm", MDM_PLAN),
    "mdm + prefix cache": ("mdm", {**MDM_PLAN, "kv_cache": True}),
    "mdm + dual cache": ("mdm", {**MDM_PLAN, "dual_cache": True}),
    "bd3 exact cache": ("bd3", {"steps": BLOCK}),
    "bd3 no cache": ("bd3", {"steps": BLOCK}),
}


def checkpoint(runs: Path, model: str) -> Path:
    return runs / model / "checkpoints" / "last.ckpt"


def one(
    ckpt: str, judge: str, setting: str, samples: int, repeats: int, new_tokens: int
) -> dict[str, Any]:
    """Decode with one setting in this process; time `repeats` runs; judge the last samples."""
    import torch

    from llada.metrics import judge_perplexity, load_judge
    from llada.module import DiffusionLM

    model = DiffusionLM.load_from_checkpoint(ckpt)
    if setting == "bd3 no cache":
        model.objective.kv_cache = False
    options = {"steps": new_tokens, **SETTINGS[setting][1], "sampler": "multinomial",
               "forbid_eos": True}  # fmt: skip
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(samples)]
    model.generate_with_info(prompts[:2], 32, seed=1, **options)  # warm-up
    rates, out = [], None
    for repeat in range(repeats):
        started = time.perf_counter()
        out = model.generate_with_info(prompts, new_tokens, seed=repeat, **options)
        rates.append(samples * new_tokens / (time.perf_counter() - started))
    assert out is not None and out.tokens.shape == (samples, new_tokens)
    texts = [f"{prompt} {text}" for prompt, text in zip(prompts, out.texts, strict=True)]
    return {
        "setting": setting,
        "nfe": out.nfe,
        "tokens_per_s": statistics.median(rates),
        "tokens_per_s_all": rates,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "judge_ppl": judge_perplexity(load_judge(judge), texts),
        "threads": torch.get_num_threads(),
        "example": texts[0][:160],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=REPO / "outputs" / "bench_block_decode")
    parser.add_argument("--reuse", action="store_true", help="use trained runs in --runs")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-only", action="store_true", help="train, time nothing")
    parser.add_argument("--new-tokens", type=int, default=NEW_TOKENS)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one setting
    args = parser.parse_args()
    if args.one:
        model, _ = SETTINGS[args.one]
        result = one(
            str(checkpoint(args.runs, model)),
            str(checkpoint(args.runs, "ar")),
            args.one,
            args.samples,
            args.repeats,
            args.new_tokens,
        )
        print(json.dumps(result))
        return
    sys.path.insert(0, str(REPO / "src"))
    from llada.machine import describe, summary

    print(f"machine: {summary()}", flush=True)
    if not args.reuse:
        for name, overrides in MODELS.items():
            command = [sys.executable, "-m", "llada.train", *TRAIN, *overrides,
                       f"hydra.run.dir={args.runs / name}"]  # fmt: skip
            print(f"[train {name}] {' '.join(command[2:])}", flush=True)
            subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    if args.train_only:
        return
    rows = []
    for setting in SETTINGS:
        command = [sys.executable, __file__, "--runs", str(args.runs), "--one", setting,
                   "--samples", str(args.samples), "--repeats", str(args.repeats),
                   "--new-tokens", str(args.new_tokens)]  # fmt: skip
        done = subprocess.run(command, check=True, cwd=REPO, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        row = rows[-1]
        print(f"{setting:22s} NFE {row['nfe']:4d}  {row['tokens_per_s']:7.1f} tok/s  "
              f"RSS {row['peak_rss_mb']:5.0f} MB  judge ppl {row['judge_ppl']:.1f}", flush=True)  # fmt: skip
    write(rows, args, describe(), summary())


def write(rows: list[dict[str, Any]], args: Any, machine: dict[str, Any], line: str) -> None:
    suffix = "" if args.new_tokens == NEW_TOKENS else f"_{args.new_tokens}"
    out = REPO / "scripts" / "results" / f"bench_block_decode{suffix}"
    baseline = rows[0]["tokens_per_s"]
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    lines = [
        f"# Decoding {args.new_tokens} new tokens: exact block cache vs MDM block decoding "
        "(scripts/bench_block_decode.py)",
        "",
        f"`python scripts/bench_block_decode.py --samples {args.samples} --repeats "
        f"{args.repeats} --new-tokens {args.new_tokens}`; measured on {line}. "
        "Models of the same size (experiment=quick, "
        "320-token context, 400 steps of 8 x 320 tokens on the default corpus); "
        f"{args.samples} samples of {args.new_tokens} new tokens per run (4 prompts, "
        "multinomial, EOS "
        f"forbidden), blocks of {BLOCK}, one token per step. tokens/s: median of "
        f"{args.repeats} timed runs (min-max in brackets), one process per setting, nothing "
        "else running. Judge: the AR baseline trained the same way.",
        "",
        "| setting | NFE | tokens/s | vs mdm (no cache) | peak RSS MB | judge ppl |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        low, high = min(r["tokens_per_s_all"]), max(r["tokens_per_s_all"])
        lines.append(
            f"| {r['setting']} | {r['nfe']} | {r['tokens_per_s']:.0f} ({low:.0f}-{high:.0f}) | "
            f"{r['tokens_per_s'] / baseline:.2f}x | {r['peak_rss_mb']:.0f} | "
            f"{r['judge_ppl']:.1f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
