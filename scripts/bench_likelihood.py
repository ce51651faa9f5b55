"""MDM vs AR likelihood at equal parameters, data and tokens on the default corpus.

    python scripts/bench_likelihood.py [hydra overrides ...] [--runs DIR] [--reuse]

Trains the default masked diffusion model and the AR baseline (`model=ar_tiny`: the same network
with a causal mask; same data, batches, steps, optimizer) through the real `llada.train` CLI and
compares their final validation figures on the same held-out blocks: the MDM's ELBO perplexity (an
upper bound on its perplexity, K Monte-Carlo draws per block) and the AR's exact perplexity. Both
score the same tokens: the AR predicts each block's first token from its start token.
`--reuse` reads existing runs in `--runs` instead of training. Writes bench_likelihood.{md,json}.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODELS = {"mdm": [], "ar": ["model=ar_tiny"]}


def final_validation(run_dir: Path) -> dict[str, float]:
    """The last logged val/* row of a run's metrics.csv, plus the tokens it trained on."""
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    val = [r for r in rows if r.get("val/ppl")]
    seen = [r for r in rows if r.get("train/tokens_seen")]
    if not val:
        raise ValueError(f"{run_dir}/metrics.csv has no val/ppl row; did the run finish?")
    return {
        "val_ppl": float(val[-1]["val/ppl"]),
        "val_nll": float(val[-1]["val/elbo"]),
        "val_nll_stderr": float(val[-1]["val/elbo_stderr"]),
        "step": int(float(val[-1]["step"])),
        "tokens_seen": int(float(seen[-1]["train/tokens_seen"])) if seen else -1,
    }


def train(model: str, run_dir: Path, overrides: list[str]) -> float:
    command = [
        sys.executable, "-m", "llada.train", *MODELS[model], *overrides,
        f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false",
    ]  # fmt: skip
    print(f"[{model}] {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both runs")
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "scripts" / "results")
    args = parser.parse_args()
    runs = args.runs or REPO / "outputs" / "bench_likelihood" / time.strftime("%Y-%m-%d_%H-%M-%S")
    results: dict[str, Any] = {}
    for model in MODELS:
        seconds = None if args.reuse else train(model, runs / model, args.overrides)
        results[model] = {**final_validation(runs / model), "train_seconds": seconds}
    mdm, ar = results["mdm"], results["ar"]
    ratio = mdm["val_ppl"] / ar["val_ppl"]
    # log ratio = NLL difference; its stderr from the two (independent) estimates
    log_ratio_stderr = math.hypot(mdm["val_nll_stderr"], ar["val_nll_stderr"])
    summary = {
        "overrides": args.overrides,
        "results": results,
        "ppl_ratio_mdm_over_ar": ratio,
        "ppl_ratio_range_2se": [
            ratio * math.exp(-2 * log_ratio_stderr),
            ratio * math.exp(2 * log_ratio_stderr),
        ],
    }
    lines = [
        "# MDM ELBO vs AR perplexity (scripts/bench_likelihood.py)",
        "",
        f"Overrides: `{' '.join(args.overrides) or '(defaults)'}`; runs in `{runs}`.",
        "",
        "| model | val ppl | NLL nats/token | stderr | step | tokens seen | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (("mdm", "MDM (ELBO bound)"), ("ar", "AR (exact)")):
        r = results[name]
        seconds = "" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}"
        lines.append(
            f"| {label} | {r['val_ppl']:.1f} | {r['val_nll']:.4f} | {r['val_nll_stderr']:.4f} | "
            f"{r['step']} | {r['tokens_seen']} | {seconds} |"
        )
    low, high = summary["ppl_ratio_range_2se"]
    lines += ["", f"MDM / AR perplexity ratio: **{ratio:.3f}** (+-2 se: {low:.3f} - {high:.3f})"]
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_likelihood.md").write_text(table + "\n")
    (args.out / "bench_likelihood.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
