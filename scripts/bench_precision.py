"""fp32 against bf16 on this CPU: matmul peak, training and decoding throughput.

    python scripts/bench_precision.py CKPT [--repeats 3] [--sizes tiny,small]

CPUs differ: AMD EPYC hosts with AVX2 only emulate bf16 (slow), Intel Xeon hosts with AMX run
bf16 matmuls several times faster than fp32. This measures, each in a fresh process:
- the 2048^3 matmul in fp32 and bf16 (best of 10);
- training tokens/s through Lightning (`scripts/bench_train.py`'s model and batches: native
  backbone, batch 32 x 128, vocabulary 2048) at `32-true` and `bf16-mixed`, per size;
- decoding tokens/s of CKPT (64 prompts, 64 new tokens, 64 steps, blocks of 4, greedy) in fp32
  and under bf16 autocast, and whether the tokens stay the same;
and prints what `precision=auto` (`llada.precision`) picks here. Writes bench_precision.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
PROMPTS = ["The return statement", "A class definition", "If the object", "The import system"]
PRECISIONS = ("32-true", "bf16-mixed")


def matmul(dtype_name: str) -> dict[str, Any]:
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(10):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return {"kind": "matmul", "dtype": dtype_name, "gflops": 2 * 2048**3 / best / 1e9}


def training(size: str, precision: str, steps: int = 10, warmup: int = 2) -> dict[str, Any]:
    import torch

    from bench_train import BATCH, SEQ, SIZES, batches, build_model, run_lightning

    torch.manual_seed(0)
    model, _ = build_model("native", SIZES[size])
    data = batches(steps + warmup, torch.Generator().manual_seed(0))
    seconds, _ = run_lightning(model, data, warmup, precision)
    return {"kind": "train", "size": size, "precision": precision,
            "tokens_per_s": BATCH * SEQ * steps / seconds}  # fmt: skip


def decoding(ckpt: str, precision: str) -> dict[str, Any]:
    from llada.precision import autocast_for
    from llada.text_model import load_text_model

    model = load_text_model(ckpt)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(64)]
    options = {"sampler": "greedy", "steps": 64, "block_length": 4}
    with autocast_for(precision, "cpu"):
        model.generate_with_info(prompts[:4], 64, **options)  # warm-up
        out = model.generate_with_info(prompts, 64, **options)
    return {"kind": "decode", "precision": precision, "tokens_per_s": out.tokens_per_second,
            "tokens": out.tokens.tolist()}  # fmt: skip


def fresh(*argv: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--one", *argv], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", nargs="?")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="tiny,small")
    parser.add_argument("--out", type=Path, default=REPO / "scripts" / "results")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, *rest = args.one
        work = {"matmul": matmul, "train": training, "decode": decoding}[kind]
        print(json.dumps(work(*rest)))
        return
    sys.path.insert(0, str(REPO / "src"))
    from llada.machine import describe, summary
    from llada.precision import resolve_precision

    host = summary()
    auto = resolve_precision("auto", "cpu")
    print(f"{host}\nprecision=auto picks {auto} here", flush=True)
    rows: list[dict[str, Any]] = []

    def measure(*argv: str) -> dict[str, Any]:
        runs = [fresh(*argv) for _ in range(args.repeats)]
        key = "gflops" if argv[0] == "matmul" else "tokens_per_s"
        values = [r[key] for r in runs]
        row = {**runs[0], key: statistics.median(values), "min": min(values), "max": max(values)}
        rows.append(row)
        print({k: v for k, v in row.items() if k != "tokens"}, flush=True)
        return row

    for dtype in ("float32", "bfloat16"):
        measure("matmul", dtype)
    for size in args.sizes.split(","):
        for precision in PRECISIONS:
            measure("train", size, precision)
    if args.ckpt:
        decodes = [measure("decode", args.ckpt, precision) for precision in PRECISIONS]
        same = sum(a == b for x, y in zip(decodes[0]["tokens"], decodes[1]["tokens"], strict=True)
                   for a, b in zip(x, y, strict=True))  # fmt: skip
        total = sum(len(x) for x in decodes[0]["tokens"])
        for row in decodes:
            row["token_agreement_with_fp32"] = same / total
            row.pop("tokens")
    write(args, rows, describe(), host, auto)


def write(args: Any, rows: list[dict[str, Any]], machine: dict, host: str, auto: str) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine, "auto": auto, "rows": rows}
    (args.out / "bench_precision.json").write_text(json.dumps(payload, indent=2))
    lines = [
        "# fp32 against bf16 on this CPU (scripts/bench_precision.py)",
        "",
        f"Host: {host}. Median (min-max) of {args.repeats} fresh processes. "
        f"`precision=auto` picks **{auto}** here.",
        "",
        "| what | setting | fp32 | bf16 | bf16 / fp32 |",
        "|---|---|---|---|---|",
    ]

    def cell(row: dict[str, Any], key: str) -> str:
        return f"{row[key]:.0f} ({row['min']:.0f}-{row['max']:.0f})"

    pairs = [
        ("matmul GFLOP/s", "2048^3", "gflops", [r for r in rows if r["kind"] == "matmul"]),
        *[("training tokens/s", f"{size} (bf16-mixed)", "tokens_per_s",
           [r for r in rows if r["kind"] == "train" and r["size"] == size])
          for size in args.sizes.split(",")],
        ("decoding tokens/s", "batch 64, greedy (bf16 autocast)", "tokens_per_s",
         [r for r in rows if r["kind"] == "decode"]),
    ]  # fmt: skip
    for what, setting, key, pair in pairs:
        if len(pair) != 2:
            continue
        fp32, bf16 = pair
        lines.append(f"| {what} | {setting} | {cell(fp32, key)} | {cell(bf16, key)} | "
                     f"{bf16[key] / fp32[key]:.2f}x |")  # fmt: skip
    decode = [r for r in rows if r["kind"] == "decode"]
    if decode:
        lines += ["", f"Greedy tokens equal to fp32's under bf16: "
                  f"{decode[1]['token_agreement_with_fp32']:.1%}."]  # fmt: skip
    (args.out / "bench_precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
