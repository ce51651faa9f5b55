"""Row (d): claims other benchmark scripts measure, read from their committed JSONs through one
small adapter per schema."""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproduction.common import RESULTS, Context, ahead, claim, host, mean_of, progress
from reproduction.planning import order_claim
from runs import REPO, spread


def adapt_block_size(payload: dict[str, Any]) -> dict[str, str]:
    """BD3-LM: validation perplexity rises with the block size, between AR and the MDM."""
    results = payload["results"]
    order = [name for name in results if name.startswith(("ar", "bd3 L'")) and "clip" not in name]
    order += [name for name in results if name.startswith("mdm")]
    means = [statistics.fmean(mean_of(results[name], "best_ppl")) for name in order]
    monotone = all(a <= b for a, b in itertools.pairwise(means[:-1]))  # AR ... L'=64
    cells = ", ".join(
        f"{name.split(' (')[0]} {spread(mean_of(results[name], 'best_ppl'), 0)}" for name in order
    )
    return dict(
        protocol=f"scripts/bench_block_size.py, {payload.get('steps')} steps, quick network; "
        f"host: {host(payload)}",
        measured=f"val ppl: {cells}",
        verdict="holds" if monotone else "does not hold",
        why="monotone in L' up to the whole sequence, the gaps wider than on LM1B (a 0.4M model "
        "for 400 steps: the bound's looseness dominates); L'=64 and the MDM are the same family"
        if monotone
        else "the means are not monotone in L'",
    )


def first_step_below(curve: list[list[float]], target: float) -> int | None:
    """The first logged step at which a [step, ppl] curve is at or below target."""
    return next((int(step) for step, ppl in curve if ppl <= target), None)


def adapt_adaptation(payload: dict[str, Any]) -> dict[str, str]:
    """AR-to-diffusion: the AR start reaches random init's final perplexity in far fewer steps."""
    results, steps = payload["results"], int(payload["steps"])
    needed = []
    for objective in ("mdm", "bd3"):
        target = statistics.fmean(run[-1][1] for run in results[f"{objective} / random init"])
        for run in results[f"{objective} / AR + shift"]:
            needed.append(first_step_below(run, target) or steps * 10)
    return dict(
        protocol=f"scripts/bench_adaptation.py, {steps} steps, mdm and bd3, 3 seeds; host: "
        f"{host(payload)}",
        measured=f"steps for AR+shift to reach random init's final ppl: {max(needed)} of "
        f"{steps} (worst seed, both objectives)",
        verdict="holds" if max(needed) <= steps / 3 else "does not hold",
        why="the first validation already beats random init's end; caveat: the AR start had "
        "its own training compute on the same data",
    )


def adapt_parallel_decoding(payload: dict[str, Any]) -> dict[str, str]:
    """Fast-dLLM: threshold 0.9 commits several tokens per pass at about equal accuracy."""
    rules = {r["rule"]: r for r in payload["summary"]["sudoku"]}
    base, fast = rules["one token per step"], rules["threshold 0.9"]
    reduction, change = statistics.fmean(fast["reduction"]), statistics.fmean(fast["change_pt"])
    seeds = len(fast["reduction"])
    return dict(
        protocol=f"scripts/bench_parallel_decoding.py, Sudoku MDMs of training seeds "
        f"{payload.get('seeds')}, greedy; host: {host(payload)}",
        measured=f"threshold 0.9: {spread(fast['reduction'], 2)}x fewer NFE, "
        f"{spread(fast['change_pt'], 1)} pt accuracy (one token per step: "
        f"{spread(base['accuracy'], 1, scale=100)}%)",
        verdict="holds" if reduction >= 3 and change >= -2 else "does not hold",
        why=f"mean over {seeds} seed(s) of the per-seed reduction and accuracy change; on the "
        "2M-parameter language model no rule ever commits two tokens (never >= 50% sure)",
    )


def adapt_decoding_order(payload: dict[str, Any]) -> dict[str, str]:
    """Kim et al.: an adaptive order beats a random one, on bench_parallel_decoding's Sudoku MDMs
    (4000 steps, several training seeds: the budget the quick planning row cannot afford)."""
    rules = {r["rule"]: r["accuracy"] for r in payload["summary"]["sudoku"]}
    orders = {"random": rules["random order"], "low_confidence": rules["one token per step"],
              "margin": rules["margin order"]}  # fmt: skip
    found = order_claim(orders, f"the Sudoku MDMs of training seeds {payload.get('seeds')}")
    found["protocol"] = f"scripts/bench_parallel_decoding.py: {found['protocol']}; host: " + host(
        payload
    )
    return {k: found[k] for k in ("protocol", "measured", "verdict", "why")}


def adapt_grpo(payload: dict[str, Any]) -> dict[str, str]:
    """diffu-GRPO: reinforcement on verifiable rewards beats continued SFT for equal time."""
    runs, start = payload["runs"], payload["start"]
    grpo = mean_of(runs["GRPO"], "accuracy")
    sft = mean_of(next(v for k, v in runs.items() if k.startswith("SFT")), "accuracy")
    verdict = ahead(grpo, sft, margin=0.02)
    gain = 100 * (statistics.fmean(grpo) - start["accuracy"])
    return dict(
        protocol=f"scripts/bench_grpo.py: from a {payload.get('start_steps')}-step Sudoku MDM, "
        f"GRPO vs SFT on the same rows for {payload.get('seconds')} s of training each; host: "
        f"{host(payload)}",
        measured=f"held-out accuracy %: start {100 * start['accuracy']:.1f}, GRPO "
        f"{spread(grpo, scale=100)}, SFT {spread(sft, scale=100)}",
        verdict=verdict,
        why={
            "holds": "GRPO's mean is ahead of SFT's by more than 2 points and the seeds do not "
            "overlap",
            "does not hold": "SFT on the same rows is ahead for the same training time (it has "
            "the exact solution of every training puzzle; d1's SFT data are reasoning traces); "
            f"GRPO still lifts the start by {gain:+.0f} pt",
            "inconclusive": "within 2 points of SFT or the seeds overlap",
        }[verdict],
    )


VRPO_REDUCED = "budget 8 = 8 timesteps x 1 mask, antithetic"  # VRPO's default estimator


def adapt_vrpo(payload: dict[str, Any]) -> dict[str, str]:
    """VRPO: its estimator (budget over timesteps, antithetic) cuts the DPO loss estimate's
    variance, and the trained policy prefers the chosen answers more than the start did."""
    runs = payload["runs"]  # one per VRPO seed
    # The score's variance (the loss saturates where the policy separates the pairs).
    reductions = [r["variance"][VRPO_REDUCED]["score_variance_reduction"] for r in runs]
    before = runs[0]["preference"]["start_prefers_chosen"]  # the same start for every seed
    after = [r["preference"]["policy_prefers_chosen"] for r in runs]
    task = "; ".join(
        f"Countdown {kind} {100 * start:.1f}% -> "
        f"{spread([r['countdown'][kind] for r in runs], scale=100)}%"
        for kind, start in payload["countdown_start"].items()
    )
    reduction = min(reductions)
    verdict = (
        "does not hold" if reduction <= 1 else "holds" if reduction >= 2 and min(after) > before
        else "inconclusive"
    )  # fmt: skip
    return dict(
        protocol=f"scripts/bench_vrpo.py: Countdown start of {payload.get('start_steps')} "
        f"steps, {payload.get('vrpo_steps')} VRPO steps on pairs of its own samples, VRPO seeds "
        f"{payload.get('seeds')}; host: {host(payload)}",
        measured=f"preference-score variance {spread(reductions)}x lower ({VRPO_REDUCED} vs "
        "budget 1, independent); held-out pairs with chosen's ELBO above rejected's: "
        f"{before:.3f} -> {spread(after, 3)}; {task}",
        verdict=verdict,
        why={
            "holds": "the variance falls at least 2x for every seed and every seed's policy "
            "prefers chosen answers more often than the start; a small model on a synthetic "
            "task, not GSM8K",
            "does not hold": "the estimator's variance is not lower than the plain one's",
            "inconclusive": "the variance falls by under 2x or the preference did not move",
        }[verdict],
    )


@dataclass(frozen=True)
class Benchmark:
    """A published claim another script measures; `adapt` reads that script's JSON into our
    protocol, measurement, verdict and why (one small adapter per schema)."""

    claim: str
    published: str
    source: str
    adapt: Callable[[dict[str, Any]], dict[str, str]]
    script: str = ""  # the script whose JSON it reads, when not the registry key


BENCHMARKS: dict[str, Benchmark] = {
    "bench_block_size": Benchmark(
        "Block diffusion interpolates: perplexity rises with the block size L' from AR to the MDM",
        "LM1B ppl: AR 22.83 < L'=4 28.23 < L'=8 29.83 < L'=16 30.60 < MDLM 31.78",
        "Arriola et al. 2025, Block Diffusion (BD3-LM)",
        adapt_block_size,
    ),
    "bench_adaptation": Benchmark(
        "Starting a diffusion model from an AR checkpoint (with the token shift) saves most of "
        "the training",
        "DiffuLLaMA and Dream adapt 7B AR models into diffusion models with far fewer tokens "
        "than training from scratch",
        "Gong et al. 2025 (DiffuLLaMA); Ye et al. 2025 (Dream 7B)",
        adapt_adaptation,
    ),
    "bench_parallel_decoding": Benchmark(
        "Confidence-threshold decoding cuts forward passes several-fold at equal accuracy",
        "threshold 0.9 (+ cache): 3-8x fewer forward passes at about equal accuracy (LLaDA-8B)",
        "Wu et al. 2025, Fast-dLLM",
        adapt_parallel_decoding,
    ),
    "decoding_order": Benchmark(
        "Sudoku: an adaptive decoding order (most confident / largest margin first) beats a "
        "random order for the same MDM (trained 4000 steps)",
        "9x9 Sudoku: vanilla (random-order) inference < 7%, top-prob margin order ~90%",
        "Kim et al. 2025, Train for the Worst, Plan for the Best",
        adapt_decoding_order,
        script="bench_parallel_decoding",
    ),
    "bench_grpo": Benchmark(
        "diffu-GRPO improves a diffusion LM's Sudoku accuracy beyond what SFT gives",
        "d1: diffu-GRPO (alone and after SFT) lifts LLaDA-8B-Instruct's 4x4 Sudoku accuracy "
        "over the base and over SFT alone (their Table 1)",
        "Zhao et al. 2025, d1: Scaling Reasoning in Diffusion LLMs via RL",
        adapt_grpo,
    ),
    "bench_vrpo": Benchmark(
        "VRPO's estimator cuts the variance of the preference loss, and VRPO moves the model "
        "towards the chosen answers",
        "LLaDA 1.5: a larger budget spread over timesteps and antithetic sampling lower the "
        "estimator's variance; VRPO lifts LLaDA-8B-Instruct (e.g. GSM8K 78.6 -> 83.3)",
        "Zhu et al. 2025, LLaDA 1.5 (VRPO)",
        adapt_vrpo,
    ),
}


def not_measured(measured: str, why: str) -> dict[str, str]:
    """What a benchmark row says when its JSON is absent or unreadable."""
    return dict(protocol="-", measured=measured, verdict="not yet measured", why=why)


def read_benchmark(stem: str, results_dir: Path) -> dict[str, str]:
    """One benchmark's row: its published claim and what its JSON says (never raises)."""
    bench = BENCHMARKS[stem]
    path = results_dir / f"{bench.script or stem}.json"
    if not path.is_file():
        found = not_measured("not yet measured", f"no scripts/results/{path.name} yet")
    else:
        try:
            found = bench.adapt(json.loads(path.read_text()))
        except (KeyError, TypeError, ValueError, IndexError, StopIteration) as error:
            reason = f"{type(error).__name__}: {error}"
            found = not_measured(
                f"could not read {path.name} ({reason})",
                f"its schema is not the one this adapter reads: update {bench.adapt.__name__}",
            )
    return claim(claim=bench.claim, published=bench.published, source=bench.source, **found)


def run_benchmarks(ctx: Context, results_dir: Path = RESULTS) -> dict[str, Any]:
    """Say which benchmark JSONs are there; the judge reads them (so --report-only re-reads)."""
    for stem, bench in BENCHMARKS.items():
        name = f"{bench.script or stem}.json"
        found = (results_dir / name).is_file()
        with progress(ctx, f"{name}: {'found' if found else 'absent (not yet measured)'}"):
            pass
    where = results_dir.resolve()
    return {"results_dir": str(where.relative_to(REPO) if where.is_relative_to(REPO) else where)}


def judge_benchmarks(data: dict[str, Any]) -> list[dict[str, str]]:
    """Each benchmark's row, read now from its JSON through its adapter."""
    return [read_benchmark(stem, REPO / data["results_dir"]) for stem in BENCHMARKS]
