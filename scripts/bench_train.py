"""Training throughput vs the machine's limit: Lightning vs a bare loop, native vs DistilBERT.

    python scripts/bench_train.py [--sizes tiny,small,base] [--repeats 3] [--steps 30] [--out DIR]

For each size and backbone (the native LLaDA-style transformer, and DistilBERT at about the same
parameter count) it trains the same DiffusionLM objective two ways in a fresh process each:
through `lightning.Trainer.fit` (the framework path) and through a bare PyTorch loop doing the same
math (noise, masked-only output projection, weighted CE, backward, clip, AdamW). It reports
training tokens/s (median and min-max of repeats), peak RSS, and achieved FLOP/s as a fraction
of the measured fp32 matmul peak of this machine (MFU). Model FLOPs: 6 x (matmul parameters) per
token for the body, 12 x layers x seq x dim per token for attention, 6 x dim x vocab per *scored*
(masked) token for the output projection (the projection runs only there; DistilBERT's runs
everywhere and is counted everywhere, with its masked-LM head transform). Results:
bench_train.{md,json}.
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

import torch

SIZES: dict[str, dict[str, int]] = {
    "tiny": {"dim": 192, "n_layers": 4, "n_heads": 4},  # the default CPU model
    "small": {"dim": 384, "n_layers": 6, "n_heads": 6},
    "base": {"dim": 768, "n_layers": 6, "n_heads": 12},
}
VOCAB, SEQ, BATCH = 2048, 128, 32
BACKBONES = ("native", "distilbert")
SCORED_SHARE = 0.5  # E[masked share] under t ~ U(0, 1) with linear masking
PATHS = ("lightning", "bare")  # also "compiled": Lightning with module.compile_backbone=true


def matmul_peak(sizes: tuple[int, ...] = (1024, 2048, 3072), repeats: int = 10) -> float:
    """Best fp32 matmul FLOP/s of n x n x n products on this machine (all torch threads), over
    a few sizes: which size is fastest differs between CPUs (cache sizes, AVX2 vs AVX-512)."""
    peak = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(3):
            a @ b
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - started)
        peak = max(peak, 2 * n**3 / best)
    return peak


def build_model(backbone: str, size: dict[str, int]) -> Any:
    """A DiffusionLM with the project's default optimizer settings and a word-level tokenizer."""
    from llada.data.tokenizer import train_tokenizer
    from llada.models.hf import distilbert
    from llada.models.native import NativeTransformer
    from llada.module import DiffusionLM

    words = [f"w{i}" for i in range(VOCAB - 16)]
    tokenizer = train_tokenizer([" ".join(words)] * 2, VOCAB, "wordpiece", Path("/tmp/bench-tok"))
    if backbone == "native":
        net = NativeTransformer(len(tokenizer), max_len=SEQ, **size)
    else:
        dim = size["dim"]
        net = distilbert(
            len(tokenizer), dim=dim, n_layers=size["n_layers"], n_heads=size["n_heads"],
            hidden_dim=4 * dim, max_position_embeddings=SEQ,
        )  # fmt: skip

    def optimizer(params: Any) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95))

    model = DiffusionLM(net, tokenizer, optimizer=optimizer, loss_buckets=0, random_length_prob=0)
    return model, tokenizer


def model_flops_per_step(backbone: str, model: Any, size: dict[str, int]) -> float:
    """Training FLOPs of one step (backward = 2x forward). Under t ~ U(0, 1) half the tokens are
    masked on average; the native head runs on those only, DistilBERT's on every token."""
    dim, layers, tokens = size["dim"], size["n_layers"], BATCH * SEQ
    head = dim * len(model.tokenizer)  # the output projection (tied to the embedding in both)
    body = sum(
        p.numel()
        for name, p in model.backbone.named_parameters()
        if p.dim() == 2 and "embed" not in name  # lookups are not matmuls
    )
    head_tokens = tokens * SCORED_SHARE if backbone == "native" else tokens
    attention = 2 * 2 * layers * SEQ * dim  # QK^T and AV per token, forward
    return 3 * (2 * body * tokens + attention * tokens + 2 * head * head_tokens)


def batches(steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    return [torch.randint(5, VOCAB, (BATCH, SEQ), generator=generator) for _ in range(steps)]


def run_bare(model: Any, data: list[torch.Tensor], warmup: int) -> tuple[float, float]:
    """The same math as DiffusionLM.training_step, without Lightning.

    -> (seconds of the timed steps, seconds of the warm-up steps)."""
    optimizer = model.configure_optimizers()
    model.train()
    first = started = time.perf_counter()
    for step, ids in enumerate(data):
        if step == warmup:
            started = time.perf_counter()
        loss = model.objective.training_loss(model.backbone, {"input_ids": ids}).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return time.perf_counter() - started, started - first


def run_lightning(
    model: Any, data: list[torch.Tensor], warmup: int, precision: str = "32-true"
) -> tuple[float, float]:
    """Trainer.fit over the same batches at `precision`; timed from the first step after warm-up.

    -> (seconds of the timed steps, seconds of the warm-up steps: compilation for "compiled")."""
    import lightning as L

    class Clock(L.Callback):
        first = started = 0.0

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, index: int) -> None:
            if index == 0:
                self.first = time.perf_counter()
            if index == warmup:
                self.started = time.perf_counter()

    clock = Clock()
    loader = torch.utils.data.DataLoader([{"input_ids": ids} for ids in data], batch_size=None)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision=precision, max_steps=len(data), logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        gradient_clip_val=1.0, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[clock],
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=loader)
    return time.perf_counter() - clock.started, clock.started - clock.first


def one(backbone: str, size_name: str, path: str, steps: int, warmup: int) -> dict[str, Any]:
    """One measurement in this process (the parent runs each in a fresh one for clean RSS)."""
    torch.manual_seed(0)
    size = SIZES[size_name]
    model, _ = build_model(backbone, size)
    data = batches(steps + warmup, torch.Generator().manual_seed(0))
    model.compile_backbone = path == "compiled"
    seconds, warmup_seconds = (run_bare if path == "bare" else run_lightning)(model, data, warmup)
    flops = model_flops_per_step(backbone, model, size)
    return {
        "backbone": backbone,
        "size": size_name,
        "path": path,
        "params_m": round(sum(p.numel() for p in model.backbone.parameters()) / 1e6, 2),
        "tokens_per_s": BATCH * SEQ * steps / seconds,
        "flops_per_s": flops * steps / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "warmup_s": warmup_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="tiny,small,base")
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default="bench_train", help="results file stem")
    parser.add_argument(
        "--one", nargs=3, metavar=("BACKBONE", "SIZE", "PATH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.steps, args.warmup)))
        return
    from llada.machine import summary

    print(f"machine: {summary()}", flush=True)
    peak = matmul_peak()
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads)")
    settings = [
        (size, backbone, path)
        for size in args.sizes.split(",")
        for backbone in args.backbones.split(",")
        for path in args.paths.split(",")
    ]
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {setting: [] for setting in settings}
    for repeat in range(args.repeats):  # settings interleaved: a drift of the host hits them all
        for size, backbone, path in settings:
            command = [sys.executable, __file__, "--one", backbone, size, path]
            command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runs[size, backbone, path].append(result)
            print(f"repeat {repeat + 1}/{args.repeats}: {size} {backbone} {path} "
                  f"{result['tokens_per_s']:.0f} tok/s", flush=True)  # fmt: skip
    rows = []
    for setting in settings:
        row = dict(runs[setting][0])
        for key in ("tokens_per_s", "flops_per_s", "peak_rss_mb", "warmup_s"):
            row[key] = statistics.median(r[key] for r in runs[setting])
        row["tokens_per_s_repeats"] = [r["tokens_per_s"] for r in runs[setting]]
        row["mfu"] = row["flops_per_s"] / peak
        rows.append(row)
        print(
            f"{row['size']:5s} {row['backbone']:10s} {row['path']:9s} {row['params_m']:6.2f}M "
            f"{row['tokens_per_s']:8.0f} tok/s  {row['flops_per_s'] / 1e9:6.1f} GFLOP/s "
            f"MFU {row['mfu']:.2f}  RSS {row['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    write_results(args.out / args.name, rows, peak, args)


def write_results(stem: Path, rows: list[dict[str, Any]], peak: float, args: Any) -> None:
    """Markdown table (each path's tokens/s vs the bare loop's), plus the raw JSON."""
    from llada.machine import describe, summary

    stem.parent.mkdir(parents=True, exist_ok=True)
    machine = {**describe(), "matmul_peak_gflops": round(peak / 1e9, 1)}
    lines = [
        "# Training throughput (scripts/bench_train.py)",
        "",
        f"Machine: {summary()}; fp32 matmul peak {machine['matmul_peak_gflops']} GFLOP/s. "
        f"Batch {BATCH} x seq {SEQ}, vocab {VOCAB}, fp32, {args.steps} timed steps after "
        f"{args.warmup} warm-up; median (min-max) of {args.repeats} processes per setting, the "
        "settings interleaved.",
        "",
        "| size | backbone | params (M) | path | tokens/s (min-max) | GFLOP/s | MFU "
        "| peak RSS MB | warm-up s | vs bare |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    bare = {(r["size"], r["backbone"]): r["tokens_per_s"] for r in rows if r["path"] == "bare"}
    for r in rows:
        reference = bare.get((r["size"], r["backbone"]))
        ratio = f"{r['tokens_per_s'] / reference:.3f}" if reference and r["path"] != "bare" else ""
        repeats = r["tokens_per_s_repeats"]
        lines.append(
            f"| {r['size']} | {r['backbone']} | {r['params_m']} | {r['path']} | "
            f"{r['tokens_per_s']:.0f} ({min(repeats):.0f}-{max(repeats):.0f}) | "
            f"{r['flops_per_s'] / 1e9:.1f} | {r['mfu']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | {r['warmup_s']:.1f} | {ratio} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"written {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
