"""Per-step cost of decoding: our decoder against LLaDA's algorithm written plainly (the reference).

    python scripts/bench_decode_step.py CKPT [--batches 1,64] [--repeats 5] [--before-src DIR]

The reference (`llada.diffusion.reference`) does what the official code does every step: the model
on the whole canvas with its head on every position, then noise and confidences over the whole
(batch, canvas, vocabulary). Ours runs the head on the current block only and chooses, draws noise
and scores at its masked positions only. Both run the same network on the same prompts at the
checkpoint's default plan (64 new tokens, 64 steps, blocks of 4), greedy (the tokens must be
identical) and multinomial (T = 1; the random streams differ, so only speed is compared).
`--before-src` also times our decoder from another checkout's `src` (the code before a change).

Each (decoder, batch, sampler) runs in a fresh process, one at a time: a warm-up, then `--repeats`
timed generations; tokens/s as median and min-max, and the time split into the network (the
backbone's forward, timed around each call) and everything else. Writes bench_decode_step.{md,json}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["The return statement", "A class definition", "If the object", "The import system"]
N_TOKENS, STEPS, BLOCK = 64, 64, 4
SAMPLERS = {"greedy": {"sampler": "greedy"}, "multinomial": {"sampler": "multinomial"}}


def timed_network(backbone: Any) -> list[float]:
    """Wrap backbone.forward so every call's wall seconds are appended to the returned list."""
    seconds: list[float] = []
    forward = backbone.forward

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        out = forward(*args, **kwargs)
        seconds.append(time.perf_counter() - started)
        return out

    backbone.forward = wrapped
    return seconds


def one(ckpt: str, decoder: str, batch: int, sampler: str, repeats: int) -> dict[str, Any]:
    """Time one setting in this process."""
    import torch

    from llada.module import DiffusionLM

    torch.manual_seed(0)
    model = DiffusionLM.load_from_checkpoint(ckpt)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    options = {"steps": STEPS, "block_length": BLOCK, **SAMPLERS[sampler]}

    def ours(seed: int) -> torch.Tensor:
        return model.generate_with_info(prompts, N_TOKENS, seed=seed, **options).tokens

    def reference(seed: int) -> torch.Tensor:
        from llada.diffusion.reference import reference_generate

        canvas, attention = model.codec.prompt_canvas(prompts, N_TOKENS)
        gen_start = canvas.shape[1] - N_TOKENS
        filled = reference_generate(
            model, canvas, model.mask_id, gen_start=gen_start, steps=STEPS, block_length=BLOCK,
            attention_mask=None if bool(attention.all()) else attention,
            temperature=0.0 if sampler == "greedy" else 1.0,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        return filled[:, gen_start:]

    run = reference if decoder == "reference" else ours
    network = timed_network(model.backbone)
    with torch.no_grad():
        run(1)  # warm-up
        totals, nets = [], []
        for repeat in range(repeats):
            network.clear()
            started = time.perf_counter()
            tokens = run(repeat)
            totals.append(time.perf_counter() - started)
            nets.append(sum(network))
    tokens_per_s = [batch * N_TOKENS / t for t in totals]
    return {
        "decoder": decoder, "batch": batch, "sampler": sampler, "repeats": repeats,
        "tokens_per_s": statistics.median(tokens_per_s),
        "tokens_per_s_min": min(tokens_per_s), "tokens_per_s_max": max(tokens_per_s),
        "seconds": statistics.median(totals),
        "network_s": statistics.median(nets),
        "network_share": statistics.median(n / t for n, t in zip(nets, totals, strict=True)),
        "forward_calls": len(network),
        "tokens_sha": hashlib.sha256(str(tokens.tolist()).encode()).hexdigest()[:16],
    }  # fmt: skip


def run_setting(args: argparse.Namespace, decoder: str, batch: int, sampler: str, src: Path):
    command = [sys.executable, __file__, args.ckpt, "--one", decoder, "--batch", str(batch)]
    command += ["--sampler", sampler, "--repeats", str(args.repeats)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{decoder} batch {batch} {sampler} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before-src", type=Path, help="another checkout's src: 'before' rows")
    parser.add_argument("--out", type=Path, default=REPO / "scripts" / "results")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sampler", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.ckpt, args.one, args.batch, args.sampler, args.repeats)))
        return
    sys.path.insert(0, str(REPO / "src"))
    from llada.machine import describe, summary

    print(summary(), flush=True)
    decoders = [("reference", REPO / "src"), ("ours", REPO / "src")]
    if args.before_src is not None:
        decoders.insert(1, ("before", args.before_src.resolve()))
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        for sampler in SAMPLERS:
            for name, src in decoders:
                row = run_setting(args, "reference" if name == "reference" else "ours", batch,
                                  sampler, src)  # fmt: skip
                row["decoder"] = name
                rows.append(row)
                print(
                    f"batch {batch:3d} {sampler:11s} {name:9s} {row['tokens_per_s']:8.1f} tok/s "
                    f"({row['tokens_per_s_min']:.1f}-{row['tokens_per_s_max']:.1f}) network "
                    f"{row['network_share']:.0%} tokens {row['tokens_sha']}",
                    flush=True,
                )
    write(args, rows, describe(), summary())


def write(args: argparse.Namespace, rows: list[dict], machine: dict, host: str) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_decode_step.json").write_text(
        json.dumps({"machine": machine, "ckpt": args.ckpt, "rows": rows}, indent=2)
    )
    by = {(r["batch"], r["sampler"], r["decoder"]): r for r in rows}
    lines = [
        "# Per-step decoding cost against LLaDA's reference algorithm",
        "",
        f"`python scripts/bench_decode_step.py {args.ckpt} --batches {args.batches} --repeats "
        f"{args.repeats}`{' --before-src ...' if args.before_src else ''}. Host: {host}.",
        f"Plan: {N_TOKENS} new tokens, {STEPS} steps, blocks of {BLOCK}; one process per row, "
        f"median (min-max) of {args.repeats} timed runs after a warm-up.",
        "",
        "| batch | sampler | decoder | tokens/s | vs reference | network ms/step | other ms/step "
        "| outside network | tokens |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        reference = by[(row["batch"], row["sampler"], "reference")]
        network_ms = 1e3 * row["network_s"] / STEPS
        other_ms = 1e3 * (row["seconds"] - row["network_s"]) / STEPS
        same = "same as reference" if row["tokens_sha"] == reference["tokens_sha"] else "differ"
        lines.append(
            f"| {row['batch']} | {row['sampler']} | {row['decoder']} | {row['tokens_per_s']:.0f} "
            f"({row['tokens_per_s_min']:.0f}-{row['tokens_per_s_max']:.0f}) | "
            f"{row['tokens_per_s'] / reference['tokens_per_s']:.2f}x | {network_ms:.1f} | "
            f"{other_ms:.1f} | {1 - row['network_share']:.0%} | {same} |"
        )
    (args.out / "bench_decode_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
