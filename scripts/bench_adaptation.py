"""From autoregressive to diffusion: how much an AR start saves (DiffuLLaMA / Dream in small).

    python scripts/bench_adaptation.py [--seeds 0 1 2] [--steps 400] [--runs DIR] [--reuse]
                                       [--objectives mdm bd3]

Trains the AR baseline once (experiment=quick, `model=ar_tiny`), then for each objective (mdm,
and bd3 with blocks of 16) and seed three runs of the same network, data split, batch size and
steps: (a) random init, (b) `model.init_from` the AR checkpoint with `model.token_shift=true`,
(c) the same start without the shift. Validation every steps/10. Reports the validation ELBO
perplexity against steps (mean and spread over seeds) and the first step at which (b) reaches
(a)'s final perplexity (target: a third of the steps or fewer). Writes bench_adaptation.{md,json}.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from runs import REPO, ensure_trained

OBJECTIVES = {"mdm": [], "bd3": ["objective=bd3", "objective.block_size=16"]}
STARTS = {  # name -> (run directory, overrides)
    "random init": ("random", []),
    "AR + shift": ("ar_shift", ["model.token_shift=true"]),
    "AR, no shift": ("ar_no_shift", []),
}


def curve(run_dir: Path) -> list[tuple[int, float]]:
    """(steps done, val/ppl) at every validation of a run."""
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    points = [(int(float(r["step"])) + 1, float(r["val/ppl"])) for r in rows if r.get("val/ppl")]
    if not points:
        raise ValueError(f"{run_dir}/metrics.csv has no val/ppl row; did the run finish?")
    return points


def train(run_dir: Path, steps: int, seed: int, overrides: list[str]) -> None:
    """One run of the quick network (reused when run_dir holds it finished)."""
    ensure_trained(run_dir, [
        "experiment=quick", f"seed={seed}", "data.seed=0", f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps // 10}", "callbacks.samples.prompts=[]", *overrides,
    ])  # fmt: skip


def steps_to_reach(points: list[tuple[int, float]], target: float) -> int | None:
    return next((step for step, ppl in points if ppl <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--runs", type=Path, default=REPO / "outputs" / "bench_adaptation")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument(
        "--objectives", nargs="+", choices=list(OBJECTIVES), default=list(OBJECTIVES)
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from llada.machine import describe, summary

    print(f"machine: {summary()}", flush=True)
    ar_dir = args.runs / "ar"
    if not args.reuse:
        train(ar_dir, args.steps, 0, ["model=ar_tiny"])
    ar_ckpt = ar_dir / "checkpoints" / "last.ckpt"
    results: dict[str, Any] = {"ar": curve(ar_dir)}
    for objective in args.objectives:
        for start, (folder, extra) in STARTS.items():
            runs = []
            for seed in args.seeds:
                run_dir = args.runs / objective / folder / f"seed{seed}"
                overrides = [*OBJECTIVES[objective], *extra]
                if start != "random init":
                    overrides.append(f"model.init_from={ar_ckpt}")
                if not args.reuse:
                    train(run_dir, args.steps, seed, overrides)
                runs.append(curve(run_dir))
            results[f"{objective} / {start}"] = runs
    write(results, args, describe(), summary())


def write(results: dict[str, Any], args: Any, machine: dict[str, Any], line: str) -> None:
    out = REPO / "scripts" / "results" / "bench_adaptation"
    out.with_suffix(".json").write_text(
        json.dumps({"machine": machine, "steps": args.steps, "results": results}, indent=2)
    )
    steps = [step for step, _ in results[f"{args.objectives[0]} / random init"][0]]
    lines = [
        "# Starting diffusion from an AR checkpoint (scripts/bench_adaptation.py)",
        "",
        f"`python scripts/bench_adaptation.py --steps {args.steps} --seeds "
        f"{' '.join(map(str, args.seeds))}`; measured on {line}. experiment=quick network and "
        "data (one split, `data.seed=0`), the same batch size and steps for every run; the AR "
        f"start is one `model=ar_tiny` run of {args.steps} steps (final exact val ppl "
        f"{results['ar'][-1][1]:.1f}). Validation ELBO perplexity, mean +- standard deviation "
        f"over {len(args.seeds)} seeds (the seed sets the initialisation of (a) and the batch "
        "order). Exact values vary by machine.",
        "",
        "| objective / start | " + " | ".join(f"step {s}" for s in steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    for name, runs in results.items():
        if name == "ar":
            continue
        cells = []
        for index in range(len(steps)):
            values = [run[index][1] for run in runs]
            spread = f" +- {statistics.stdev(values):.0f}" if len(values) > 1 else ""
            cells.append(f"{statistics.fmean(values):.0f}{spread}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Steps the AR start with shift needs to reach random init's final perplexity:",
        "",
    ]
    for objective in args.objectives:
        scratch = results[f"{objective} / random init"]
        shifted = results[f"{objective} / AR + shift"]
        reached = []
        for own, adapted in zip(scratch, shifted, strict=True):
            reached.append(steps_to_reach(adapted, own[-1][1]))
        shown = ", ".join("never" if r is None else str(r) for r in reached)
        lines.append(f"- {objective}: {shown} of {args.steps} (per seed)")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
