"""MDM vs AR likelihood at equal parameters, data and tokens on the default corpus, over seeds.

    python scripts/bench_likelihood.py [hydra overrides ...] [--seeds 0 1 2] [--runs DIR]

Per seed, the default masked diffusion model and the AR baseline (`model=ar_tiny`: the same
network with a causal mask; same data split, batches, steps, optimizer): the very runs of
`scripts/any_order.py infill` (same overrides and directories; finished ones are reused, missing
ones trained through `llada.train`). Compares their validation figures on the same held-out
blocks: the MDM's ELBO perplexity (an upper bound on its perplexity, K Monte-Carlo draws per
block) and the AR's exact perplexity. Both score the same tokens: the AR predicts each block's
first token from its start token. Ratios are taken per seed, then summarised as mean +- sd
(min-max). Writes bench_likelihood.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from any_order import run_dir, run_overrides
from runs import REPO, ensure_trained, spread, validations

MODELS = ("MDM", "AR")


def ratio_with_range(mdm: dict[str, float], ar: dict[str, float]) -> tuple[float, float, float]:
    """MDM/AR perplexity ratio and its +-2 standard-error range (independent estimates)."""
    ratio = mdm["val_ppl"] / ar["val_ppl"]
    spread_2se = 2 * math.hypot(mdm["val_nll_stderr"], ar["val_nll_stderr"])
    return ratio, ratio * math.exp(-spread_2se), ratio * math.exp(spread_2se)


def seed_result(runs: Path, seed: int, overrides: list[str]) -> dict[str, Any]:
    """Both models' validations for one seed, per-step ratios and the best-vs-best ratio."""
    curves = {}
    for model in MODELS:
        directory = run_dir(runs, "infill", model, seed)
        ensure_trained(directory, run_overrides("infill", model, seed, overrides))
        curves[model] = validations(directory)
    best = {model: min(rows, key=lambda r: r["val_ppl"]) for model, rows in curves.items()}
    ratio, low, high = ratio_with_range(best["MDM"], best["AR"])
    return {
        "seed": seed,
        "validations": curves,
        "ratios": [ratio_with_range(m, a)[0] for m, a in zip(*curves.values(), strict=True)],
        "best": best,
        "best_ratio": ratio,
        "best_ratio_range_2se": [low, high],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, default=REPO / "outputs" / "any_order")
    parser.add_argument("--out", type=Path, default=REPO / "scripts" / "results")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from llada.machine import describe, summary

    host = summary()
    print(f"machine: {host}", flush=True)
    seeds = [seed_result(args.runs, seed, args.overrides) for seed in args.seeds]
    steps = [row["step"] for row in seeds[0]["validations"]["MDM"]]
    lines = [
        "# MDM ELBO vs AR perplexity (scripts/bench_likelihood.py)",
        "",
        f"`{' '.join(['python scripts/bench_likelihood.py', *args.overrides, '--seeds'])} "
        f"{' '.join(map(str, args.seeds))}`. Host: {host}. Same network, data split, batches and "
        "steps; the MDM's figure is its ELBO bound (4 MC draws per block), the AR's is exact. "
        "Mean +- sd (min-max) over the seeds; ratios per seed. Exact values vary by machine.",
        "",
        "| step (equal tokens) | MDM ELBO ppl | AR ppl | MDM / AR |",
        "|---|---|---|---|",
    ]
    for i, step in enumerate(steps):
        per = {m: [s["validations"][m][i]["val_ppl"] for s in seeds] for m in MODELS}
        ratios = [s["ratios"][i] for s in seeds]
        lines.append(
            f"| {step} | {spread(per['MDM'])} | {spread(per['AR'])} | {spread(ratios, 3)} |"
        )
    lines += ["", "Best of each run (early stopping on validation), per seed:", ""]
    for s in seeds:
        mdm, ar = s["best"]["MDM"], s["best"]["AR"]
        low, high = s["best_ratio_range_2se"]
        lines.append(
            f"- seed {s['seed']}: MDM {mdm['val_ppl']:.1f} at step {mdm['step']}, AR "
            f"{ar['val_ppl']:.1f} at step {ar['step']}: ratio {s['best_ratio']:.3f} "
            f"(+-2 se over validation blocks: {low:.3f}-{high:.3f})"
        )
    best_ratios = [s["best_ratio"] for s in seeds]
    lines += ["", f"Best-vs-best ratio over the seeds: **{spread(best_ratios, 3)}**."]
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_likelihood.md").write_text(table + "\n")
    payload = {"machine": describe(), "overrides": args.overrides, "seeds": seeds,
               "best_ratio": best_ratios}  # fmt: skip
    (args.out / "bench_likelihood.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
