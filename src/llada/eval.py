"""`python -m llada.eval ckpt=PATH [sampler.steps=32] [remasking=random] [judge=AR_CKPT]`.

One job = one checkpoint under one sampler setting: validation perplexity on the checkpoint's own
validation split (ELBO bound for diffusion, exact for AR), the sampler's cost (NFE, seconds,
tokens/s) and sample quality (distinct-1/2, unigram entropy, perplexity under a judge LM), and
exact-match accuracy when the run trained on a synthetic task. Everything goes to `eval.json` in
the job directory, so a multirun (`-m remasking=random,low_confidence sampler.steps=8,32`) leaves
one comparable file per setting without retraining. Validation and task accuracy do not depend on
the sampler: a multirun computes them once and reuses them.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import Progress

from llada.atomic import atomic_write
from llada.cli import CONF_DIR, default_device, require_ckpt
from llada.errors import fail_cleanly
from llada.generation import REMASKING_OPTIONS, Generation, GenerationSettings
from llada.metrics import Judge, distinct_n, judge_perplexity, load_judge, unigram_entropy
from llada.module import DiffusionLM

SYNTHETIC_CORPUS = "llada.data.synthetic.synthetic_documents"
# Settings-independent metrics of one checkpoint, kept across the jobs of a multirun.
_MODEL_METRICS: dict[str, dict[str, Any]] = {}


def data_config(model: DiffusionLM, cfg: DictConfig) -> dict[str, Any]:
    """The validation data: `data=` when given, else the run's own data config from the checkpoint."""
    if cfg.get("data") is not None:
        return OmegaConf.to_container(cfg.data, resolve=True)
    if model.data_config is None:
        raise ValueError(
            f"{cfg.ckpt} stores no data config (written before llada stored it); pass "
            "data=<option> (e.g. data=pydoc) with the run's data overrides, or val_batches=0 task=false"
        )
    return model.data_config


def validation_metrics(
    model: DiffusionLM, data: dict[str, Any], cfg: DictConfig, accelerator: str
) -> dict[str, float]:
    """The module's own validation_step through Lightning: the value training would log."""
    datamodule = instantiate(data)
    datamodule.prepare_tokenizer(model.tokenizer)  # the checkpoint's tokenizer, not a new one
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=cfg.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=sys.stderr.isatty(),  # a bar in a terminal, nothing in logs
        enable_model_summary=False,
        limit_val_batches=1.0 if cfg.val_batches is None else int(cfg.val_batches),
        default_root_dir=cfg.run_dir,
    )
    [logged] = trainer.validate(model, datamodule=datamodule, verbose=False)
    metrics = {key: float(value) for key, value in logged.items()}
    metrics["val/batches"] = float(trainer.num_val_batches[0])
    return metrics


def synthetic_task(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(task, options) when the data is a synthetic corpus (llada.data.synthetic), else None."""
    corpus = dict(data.get("corpus") or {})
    if corpus.get("_target_") != SYNTHETIC_CORPUS:
        return None
    options = {k: v for k, v in corpus.items() if not k.startswith("_") and k != "split"}
    return str(options.pop("task")), options


def task_metrics(
    model: DiffusionLM, data: dict[str, Any], limit: int | None, decoding: dict[str, Any]
) -> dict[str, float]:
    """task/<kind>: exact-match accuracy per query kind (llada.tasks), task/<kind>/n: queries.

    The queries are filled greedily one token per step (`llada.tasks.exact_match`), in the order
    the eval's remasking strategy picks (`decoding`): `remasking=random,margin` compares orders."""
    found = synthetic_task(data)
    if found is None:
        return {}
    from llada.tasks import task_accuracy

    task, options = found
    result = task_accuracy(model, task, limit=limit, settings=decoding, **options)
    metrics = {f"task/{kind}": value for kind, value in result["accuracy"].items()}
    metrics.update({f"task/{kind}/n": float(n) for kind, n in result["n"].items()})
    return metrics


def task_decoding(settings: dict[str, Any]) -> dict[str, Any]:
    """The generation keys that task accuracy takes from the eval's settings: the remasking."""
    return {k: settings[k] for k in ("remasking", REMASKING_OPTIONS) if k in settings}


def model_metrics(
    model: DiffusionLM, cfg: DictConfig, accelerator: str, settings: dict[str, Any]
) -> dict[str, float]:
    """Validation metrics (computed once per checkpoint in a process: they do not depend on the
    sampler) and task metrics (once per checkpoint and remasking strategy)."""
    wants_val = cfg.val_batches is None or int(cfg.val_batches) > 0
    if not wants_val and not cfg.task:
        return {}
    data = data_config(model, cfg)
    path = Path(cfg.ckpt).expanduser().resolve()
    stat = path.stat()
    base = [str(path), stat.st_mtime_ns, stat.st_size, data, cfg.precision]
    parts: dict[str, tuple[list[Any], Callable[[], dict[str, float]]]] = {}
    if wants_val:
        parts["val"] = (
            [cfg.val_batches, cfg.val_mc_samples, cfg.val_seed],
            lambda: validation_metrics(model, data, cfg, accelerator),
        )
    if cfg.task:
        decoding = task_decoding(settings)
        parts["task"] = (
            [cfg.task_limit, decoding],
            lambda: task_metrics(model, data, cfg.task_limit, decoding),
        )
    metrics: dict[str, float] = {}
    for name, (options, compute) in parts.items():
        key = json.dumps([*base, name, *options], sort_keys=True, default=str)
        if key not in _MODEL_METRICS:
            _MODEL_METRICS[key] = compute()
        metrics.update(_MODEL_METRICS[key])
    return metrics


def prompt_of(cfg: DictConfig) -> str | list[str] | None:
    return OmegaConf.to_container(cfg.prompt) if OmegaConf.is_list(cfg.prompt) else cfg.prompt


def prompts_of(cfg: DictConfig) -> list[str | None]:
    """Every prompt `num_samples` times (null: unconditional)."""
    prompt = prompt_of(cfg)
    listed = prompt if isinstance(prompt, list) else [prompt]
    return [p for p in listed for _ in range(int(cfg.num_samples))]


def sample(
    model: DiffusionLM, cfg: DictConfig, settings: dict[str, Any]
) -> tuple[list[Generation], list[str]]:
    """Generate in batches of `batch_size`; returns the calls' results and all texts."""
    prompts = prompts_of(cfg)
    if not prompts:
        raise ValueError("num_samples must be >= 1")
    size = int(cfg.batch_size)
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    calls = []
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("sampling", total=len(prompts))
        for first in range(0, len(prompts), size):
            chunk = prompts[first : first + size]
            calls.append(model.generate_with_info(chunk, seed=int(cfg.seed) + first, **settings))
            progress.advance(task, len(chunk))
    return calls, [text for call in calls for text in call.texts]


def generation_metrics(
    model: DiffusionLM, calls: list[Generation], texts: list[str], judge: Judge | None
) -> dict[str, float]:
    """Cost of the sampler (NFE per call, wall time, tokens/s) and quality of its samples."""
    seconds = sum(call.seconds for call in calls)
    generated = sum(call.tokens.numel() for call in calls)
    rows = [model.tokenizer.encode(text, add_special_tokens=False) for text in texts]
    metrics = {
        "gen/nfe": sum(call.nfe for call in calls) / len(calls),
        "gen/seconds": seconds,
        "gen/tokens_per_second": generated / max(seconds, 1e-9),
        "gen/samples": float(len(texts)),
        "gen/mean_tokens": sum(len(row) for row in rows) / len(rows),
        "gen/distinct_1": distinct_n(rows, 1),
        "gen/distinct_2": distinct_n(rows, 2),
        "gen/unigram_entropy": unigram_entropy(rows),
    }
    if judge is not None:
        metrics["gen/judge_ppl"] = judge_perplexity(judge, texts)
    return metrics


def log_to_loggers(cfg: DictConfig, result: dict[str, Any]) -> None:
    """The metrics (numbers only) and the settings to the configured Lightning loggers."""
    loggers = [instantiate(c) for c in cfg.logger.values() if c is not None] if cfg.logger else []
    numbers = {k: v for k, v in result["metrics"].items() if isinstance(v, int | float)}
    for logger in loggers:
        logger.log_hyperparams({"ckpt": result["ckpt"], **result["settings"]})
        logger.log_metrics(numbers, step=0)
        logger.save()
        logger.finalize("success")


def summary(result: dict[str, Any]) -> str:
    """A few lines for the terminal; eval.json has everything."""
    metrics, settings = result["metrics"], result["settings"]
    lines = [f"eval of {result['ckpt']} ({result['lm']})"]
    if "val/ppl" in metrics:
        kind = result["perplexity"]
        lines.append(
            f"validation {kind} {metrics['val/ppl']:.2f} "
            f"(+- {metrics.get('val/elbo_stderr', math.nan):.3f} nats stderr, "
            f"{int(metrics['val/batches'])} batches)"
        )
    knobs = ("sampler", "remasking", "steps", "n_tokens", "block_length")
    lines.append(
        "generation " + " ".join(f"{k}={settings.get(k)}" for k in knobs) + ": "
        f"nfe={metrics['gen/nfe']:g} seconds={metrics['gen/seconds']:.3f} "
        f"tokens/s={metrics['gen/tokens_per_second']:.1f} "
        f"distinct-1={metrics['gen/distinct_1']:.3f} distinct-2={metrics['gen/distinct_2']:.3f} "
        f"entropy={metrics['gen/unigram_entropy']:.3f}"
        + (f" judge ppl={metrics['gen/judge_ppl']:.2f}" if "gen/judge_ppl" in metrics else "")
    )
    tasks = {k[5:]: v for k, v in metrics.items() if k.startswith("task/") and k[-2:] != "/n"}
    if tasks:
        lines.append("task accuracy " + " ".join(f"{k}={v:.3f}" for k, v in tasks.items()))
    return "\n".join(lines)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run every metric for `cfg.ckpt` under the config's sampler setting; writes eval.json."""
    require_ckpt(cfg.get("ckpt"))
    device = default_device(cfg.device)
    accelerator = "cpu" if str(device).startswith("cpu") else "gpu"
    model = DiffusionLM.load_from_checkpoint(
        cfg.ckpt, map_location=device, val_mc_samples=int(cfg.val_mc_samples),
        val_seed=int(cfg.val_seed),
    )  # fmt: skip
    settings = GenerationSettings.group_values(cfg.get("sampler"), cfg.get("remasking"))
    model.settings(**settings)  # bad settings and judges fail before the slow parts
    judge = None
    if cfg.judge:
        judge = load_judge(str(cfg.judge), device=device, batch_size=int(cfg.judge_batch_size))
    metrics = model_metrics(model, cfg, accelerator, settings)
    calls, texts = sample(model, cfg, settings)
    metrics.update(generation_metrics(model, calls, texts, judge))
    result = {
        "ckpt": str(Path(cfg.ckpt).expanduser().resolve()),
        "lm": model.lm_kind,
        "perplexity": model.objective.perplexity_label(),  # exact, an ELBO bound, or neither
        "settings": {
            **calls[0].settings,
            "prompt": prompt_of(cfg),
            "num_samples": int(cfg.num_samples),
            "seed": int(cfg.seed),
            "judge": cfg.judge,
            "val_batches": cfg.val_batches,
            "val_mc_samples": model.val_mc_samples,  # 1 for AR: its value is exact
        },
        "metrics": metrics,
        "samples": texts,
    }
    path = Path(cfg.run_dir) / "eval.json"
    with atomic_write(path, "w") as handle:
        json.dump(result, handle, indent=2)
    log_to_loggers(cfg, result)
    print(summary(result))
    print(f"wrote {path}")
    return result


@hydra.main(config_path=CONF_DIR, config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # Lightning's banner (accelerators found, tips) would bury the summary of every job.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    with fail_cleanly():
        evaluate(cfg)


if __name__ == "__main__":
    sys.exit(main())
