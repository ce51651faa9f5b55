"""`python -m llada.train [overrides]`: compose the config, train, checkpoint, sample.

`main` is the thin Hydra entry; `train(cfg)` does the work and returns metrics and objects so tests and
notebooks call it directly.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from llada.cli import CONF_DIR
from llada.config_schema import check_train_config
from llada.errors import fail_cleanly
from llada.generation import GenerationSettings
from llada.module import DiffusionLM
from llada.precision import AUTO, resolve_precision

# The CSV logger shares the run directory with Hydra's files on purpose (metrics.csv at the top).
warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")


def pretrained_tokenizer_source(model_cfg: DictConfig) -> str | None:
    """Pretrained backbones bring their tokenizer: `model.pretrained=<name|dir>` or `name_or_path`."""
    pretrained = model_cfg.get("pretrained")
    if isinstance(pretrained, str) and pretrained:
        return pretrained
    if pretrained is True:
        return model_cfg.get("name_or_path")
    return None


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """`ckpt_path=last` resumes from this run directory's last checkpoint."""
    if ckpt_path in (None, ""):
        return None
    if ckpt_path == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last but {last} does not exist; set hydra.run.dir to the run to resume"
            )
        return str(last)
    if not Path(ckpt_path).expanduser().is_file():
        raise FileNotFoundError(
            f"ckpt_path={ckpt_path} does not exist (pass a .ckpt file or 'last')"
        )
    return str(Path(ckpt_path).expanduser())


def refuse_to_overwrite(run_dir: Path, ckpt_path: str | None) -> None:
    """A run directory that already holds checkpoints is resumed, never silently trained over."""
    existing = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    if existing and ckpt_path is None:
        raise FileExistsError(
            f"{run_dir} already holds checkpoints ({existing[0].name}, ...); resume it with "
            "ckpt_path=last or pick a new hydra.run.dir"
        )


def init_from_kinds(cfg: DictConfig) -> tuple[str, ...]:
    """The kinds of checkpoint `model.init_from` takes for the run's objective (one-line error
    when a post-training objective has none)."""
    objective = get_class(cfg.objective._target_)
    if objective.needs_init_from and not cfg.model.get("init_from"):
        raise ValueError(
            f"objective {objective.__name__} post-trains a model: set model.init_from=<a "
            f"{' or '.join(objective.init_from_kinds)} .ckpt> (e.g. experiment=sudoku's last.ckpt)"
        )
    return objective.init_from_kinds


def build_model(cfg: DictConfig, tokenizer: Any) -> DiffusionLM:
    """Backbone, objective (a partial: the module supplies the tokenizer's ids) and the module."""
    backbone = instantiate(cfg.model)(vocab_size=len(tokenizer))
    if hasattr(backbone, "fit_vocab"):  # pretrained weights, tokenizer with added tokens
        backbone.fit_vocab(len(tokenizer))
    if getattr(backbone, "init_from", None):  # model.init_from: a checkpoint's weights
        from llada.init_from import load_backbone_weights, read_init_checkpoint

        weights = read_init_checkpoint(backbone.init_from, init_from_kinds(cfg))[0]
        load_backbone_weights(backbone, weights, backbone.init_from)
    objective = instantiate(cfg.objective)  # a partial
    if cfg.objective.get("reference"):  # objective.reference: a checkpoint for the KL reference
        from llada.init_from import load_reference

        reference = load_reference(cfg.objective.reference, backbone, tokenizer)
        objective = functools.partial(objective, reference=reference)
    return DiffusionLM(
        backbone=backbone,
        tokenizer=tokenizer,
        schedule=instantiate(cfg.masking),
        objective=objective,
        optimizer=instantiate(cfg.optim.optimizer),
        lr_scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
        generation=GenerationSettings.from_groups(cfg.sampler, cfg.remasking),
        weight_decay=cfg.optim.weight_decay,
        **cfg.module,
    )


def apply_global_batch_size(trainer: L.Trainer, batch_size: int, global_batch_size: int) -> None:
    """Express the batch once: gradient accumulation = global / (per-device batch x processes)."""
    per_step = batch_size * trainer.num_devices * trainer.num_nodes
    if global_batch_size % per_step:
        raise ValueError(
            f"global_batch_size={global_batch_size} is not a multiple of data.batch_size "
            f"({batch_size}) x devices ({trainer.num_devices}) x nodes ({trainer.num_nodes}) = "
            f"{per_step}; change one of them"
        )
    trainer.accumulate_grad_batches = global_batch_size // per_step


def finish_with_validation(trainer: L.Trainer, model: DiffusionLM, datamodule: Any) -> None:
    """Validate the final weights (unless the last step just did) and write them to last.ckpt.

    Without this a run whose max_steps is not a multiple of val_check_interval would end with
    stale metrics and a last.ckpt from the last periodic save, not the final weights.
    """
    if trainer.fast_dev_run:
        return
    if trainer.global_step != model.last_validated_step:
        trainer.validate(model, datamodule=datamodule, verbose=False)
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.dirpath:  # last.ckpt = the final weights
        trainer.save_checkpoint(str(Path(checkpoint.dirpath) / "last.ckpt"))


def close_wandb_runs(trainer: L.Trainer) -> None:
    """Finish this job's wandb run, so the next job of a multirun logs into a run of its own."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one run described by `cfg`; returns {"metrics", "model", "trainer", "run_dir", ...}."""
    check_train_config(cfg)  # bad values fail in one line before any work
    run_dir = Path(cfg.run_dir)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, run_dir)  # fail before any work is done
    refuse_to_overwrite(run_dir, ckpt_path)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    tokenizer_source = pretrained_tokenizer_source(cfg.model)
    pretrained_tokenizer = None
    if tokenizer_source:
        from llada.hub import load_tokenizer

        pretrained_tokenizer = load_tokenizer(tokenizer_source)
    if cfg.model.get("init_from") or get_class(cfg.objective._target_).needs_init_from:
        from llada.init_from import read_init_checkpoint  # the checkpoint's tokenizer

        pretrained_tokenizer = read_init_checkpoint(cfg.model.init_from, init_from_kinds(cfg))[1]
    tokenizer = datamodule.prepare_tokenizer(pretrained_tokenizer)
    model = build_model(cfg, tokenizer)
    model.data_config = OmegaConf.to_container(cfg.data, resolve=True)
    n_params = sum(p.numel() for p in model.backbone.parameters())
    print(f"backbone: {type(model.backbone).__name__} with {n_params / 1e6:.2f}M parameters")

    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    loggers = [instantiate(c) for c in cfg.logger.values() if c is not None] if cfg.logger else []
    precision = resolve_precision(str(cfg.trainer.precision), str(cfg.trainer.accelerator))
    if cfg.trainer.precision == AUTO:
        print(f"precision: {precision} (trainer.precision=auto on this machine)")
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=str(run_dir),
        precision=precision,
    )
    if cfg.get("global_batch_size"):
        apply_global_batch_size(trainer, cfg.data.batch_size, cfg.global_batch_size)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    finish_with_validation(trainer, model, datamodule)
    metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if trainer.is_global_zero and "val/ppl" in metrics:
        metrics["unigram_ppl"] = datamodule.unigram_perplexity()
        kind = model.objective.perplexity_label()
        floor = metrics["unigram_ppl"]  # NaN for post-training rows: no corpus to compare with
        print(
            f"validation {kind} {metrics['val/ppl']:.1f} "
            f"(+- {metrics.get('val/elbo_stderr', float('nan')):.3f} nats stderr)"
            + (f" vs unigram perplexity {floor:.1f} of the corpus" if floor == floor else "")
        )
    close_wandb_runs(trainer)
    return {"metrics": metrics, "model": model, "trainer": trainer, "run_dir": run_dir}


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry: returns the validation perplexity (what a sweeper would minimise)."""
    with fail_cleanly():
        result = train(cfg)
    return result["metrics"].get("val/ppl")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
