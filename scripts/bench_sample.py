"""Sampling speed vs quality: every remasking strategy and step count against LLaDA's reference.

    python scripts/bench_sample.py MDM_CKPT --judge AR_CKPT [--samples 64] [--n-tokens 64]

Reference setting (LLaDA): low_confidence remasking, steps = n_tokens (one token per forward pass),
no cache. Each setting runs in a fresh process (clean peak-memory figure) on the same prompts and
seed and reports forward passes (NFE), tokens/s, peak RSS, and quality: perplexity of the samples
under the judge (an autoregressive checkpoint trained on the same data, or any HF causal LM),
unigram entropy and distinct-2 (the judge alone rewards repetition, so "equal quality" below also
requires entropy within 5% of the reference). Headline: the fastest setting whose judge perplexity
is within 5% of the reference's, with its NFE and tokens/s ratios. Writes bench_sample.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

PROMPTS = ["The return statement", "A class definition", "If the object", "The import system"]


def settings_grid(n_tokens: int) -> list[dict[str, Any]]:
    """The reference first, then cheaper settings: fewer steps, bigger blocks, cache, threshold.

    Blocks stay the checkpoint's (4 tokens) while there are enough steps for them; fewer steps
    than blocks get blocks of n_tokens / steps (one step per block).
    """
    grid: list[dict[str, Any]] = [{"remasking": "low_confidence", "steps": n_tokens}]
    for steps in (n_tokens // 2, n_tokens // 4, n_tokens // 8):
        blocks = {"block_length": n_tokens // steps} if n_tokens // steps > 4 else {}
        grid.append({"remasking": "low_confidence", "steps": steps, **blocks})
        grid.append({"remasking": "low_confidence", "steps": steps, "kv_cache": True, **blocks})
    for name in ("random", "margin", "entropy"):
        grid.append({"remasking": name, "steps": n_tokens // 4})
    for threshold in (0.9, 0.7, 0.5):
        grid.append(
            {"remasking": "threshold", "steps": n_tokens // 4,
             "remasking_options": {"threshold": threshold}}
        )  # fmt: skip
    grid.append({"remasking": "low_confidence", "steps": n_tokens, "kv_cache": True})
    return grid


def one(ckpt: str, judge: str, setting: dict[str, Any], samples: int, n_tokens: int) -> dict:
    """Generate with one setting in this process, then score the samples with the judge."""
    from llada.metrics import distinct_n, judge_perplexity, load_judge, unigram_entropy
    from llada.module import DiffusionLM

    torch.manual_seed(0)
    model = DiffusionLM.load_from_checkpoint(ckpt)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(samples)]
    model.generate_with_info(prompts[:2], n_tokens, seed=1, **setting)  # warm-up
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = model.generate_with_info(prompts, n_tokens, seed=0, **setting)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [row.tolist() for row in out.tokens]
    texts = [f"{prompt} {text}" for prompt, text in zip(prompts, out.texts, strict=True)]
    return {
        "setting": setting,
        "nfe": out.nfe,
        "seconds": out.seconds,
        "tokens_per_s": out.tokens_per_second,
        "peak_rss_mb": rss_peak,
        "generation_rss_growth_mb": rss_peak - rss_before,
        "judge_ppl": judge_perplexity(load_judge(judge), texts),
        "entropy": unigram_entropy(rows),
        "distinct_2": distinct_n(rows, 2),
        "example": texts[0][:160],
    }


def label(setting: dict[str, Any]) -> str:
    parts = [setting["remasking"], f"steps={setting['steps']}"]
    parts += [f"block={setting['block_length']}"] if "block_length" in setting else []
    parts += [f"{k}={v}" for k, v in setting.get("remasking_options", {}).items()]
    parts += ["kv_cache"] if setting.get("kv_cache") else []
    return " ".join(parts)


def headline(rows: list[dict[str, Any]], tolerance: float = 0.05) -> dict[str, Any] | None:
    """Fastest setting within `tolerance` of the reference's judge ppl (and not less diverse)."""
    reference = rows[0]
    equal = [
        r
        for r in rows[1:]
        if r["judge_ppl"] <= reference["judge_ppl"] * (1 + tolerance)
        and r["entropy"] >= reference["entropy"] * (1 - tolerance)
    ]
    if not equal:
        return None
    best = max(equal, key=lambda r: r["tokens_per_s"])
    return {
        "setting": label(best["setting"]),
        "nfe_reduction": reference["nfe"] / best["nfe"],
        "speedup": best["tokens_per_s"] / reference["tokens_per_s"],
        "judge_ppl": best["judge_ppl"],
        "reference_judge_ppl": reference["judge_ppl"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt")
    parser.add_argument("--judge", required=True, help="an AR .ckpt or an HF causal LM dir/name")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--n-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a JSON setting: run it here
    args = parser.parse_args()
    if args.one:
        result = one(args.ckpt, args.judge, json.loads(args.one), args.samples, args.n_tokens)
        print(json.dumps(result))
        return
    rows = []
    for setting in settings_grid(args.n_tokens):
        command = [sys.executable, __file__, args.ckpt, "--judge", args.judge, "--one"]
        command += [json.dumps(setting), "--samples", str(args.samples)]
        command += ["--n-tokens", str(args.n_tokens)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{label(setting):45s} NFE {row['nfe']:4d} {row['tokens_per_s']:8.0f} tok/s "
            f"judge ppl {row['judge_ppl']:7.1f} entropy {row['entropy']:.2f} "
            f"distinct-2 {row['distinct_2']:.2f} RSS {row['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    write_results(args, rows, headline(rows))


def write_results(args: Any, rows: list[dict[str, Any]], best: dict[str, Any] | None) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpu": platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    lines = [
        "# Sampling speed vs quality (scripts/bench_sample.py)",
        "",
        f"`python scripts/bench_sample.py {args.ckpt} --judge {args.judge} --samples "
        f"{args.samples} --n-tokens {args.n_tokens}`; machine {machine}. First row: LLaDA's "
        "reference (low_confidence, steps = n_tokens, no cache).",
        "",
        "| setting | NFE | tokens/s | peak RSS MB | judge ppl | entropy | distinct-2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {label(r['setting'])} | {r['nfe']} | {r['tokens_per_s']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['judge_ppl']:.1f} | {r['entropy']:.3f} | "
            f"{r['distinct_2']:.3f} |"
        )
    lines.append("")
    if best:
        lines.append(
            f"Headline: **{best['setting']}** at equal quality (judge ppl {best['judge_ppl']:.1f} "
            f"vs {best['reference_judge_ppl']:.1f}): {best['nfe_reduction']:.1f}x fewer forward "
            f"passes, {best['speedup']:.1f}x tokens/s."
        )
    else:
        lines.append("Headline: no cheaper setting reached the reference's quality (within 5%).")
    table = "\n".join(lines)
    print(table)
    (args.out / "bench_sample.md").write_text(table + "\n")
    payload = {"machine": machine, "rows": rows, "headline": best}
    (args.out / "bench_sample.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
