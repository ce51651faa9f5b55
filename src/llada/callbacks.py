"""Callbacks: write samples of the final model into the run directory (and print them)."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console
from rich.panel import Panel

from llada.atomic import atomic_write
from llada.ema import find_ema


def write_jsonl_atomic(path: Path, records: list[dict[str, Any]]) -> None:
    """One JSON object a line, written atomically: readers never see half a file."""
    with atomic_write(path, "w") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)


class WriteSamples(L.Callback):
    """At the end of training, sample with the run's sampler settings and write `samples.jsonl`."""

    def __init__(
        self,
        path: str,
        num_samples: int = 4,
        prompts: list[str] | None = None,
        seed: int = 0,
        show: bool = True,
    ) -> None:
        self.path, self.num_samples, self.seed, self.show = Path(path), num_samples, seed, show
        self.prompts = list(prompts or [])
        self.records: list[dict[str, Any]] = []

    def _save_animation(self, pl_module: L.LightningModule, out: Any) -> None:
        """The first sample's denoising as a GIF beside samples.jsonl (and in wandb if on)."""
        from llada import viz

        start = out.trajectory[0].shape[1] - out.tokens.shape[1]
        frames = viz.frames_from_trajectory(
            out.trajectory, pl_module.tokenizer, pl_module.mask_id, start=start
        )
        self.animation = viz.save_gif(frames, self.path.parent / "denoising.gif")

    def _log_to_wandb(self, trainer: L.Trainer, records: list[dict[str, Any]]) -> None:
        """Samples as a table (text, strategy, steps, NFE) and the animation as media."""
        from lightning.pytorch.loggers import WandbLogger

        columns = ["prompt", "text", "sampler", "remasking", "steps", "nfe", "seconds"]
        rows = [[str(r["prompt"]), *(r.get(c) for c in columns[1:])] for r in records]
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                logger.log_table("samples/table", columns=columns, data=rows)
                if getattr(self, "animation", None):
                    logger.experiment.log(
                        {"samples/denoising": wandb.Video(str(self.animation), format="gif")}
                    )

    @staticmethod
    def _fitting_length(pl_module: L.LightningModule, prompt: str | None) -> int:
        """The configured n_tokens, shortened to what fits the model's context after the prompt.

        Short-context runs (synthetic tasks with 20-token blocks) still get end-of-run samples.
        """
        n_tokens = int(pl_module.generation.n_tokens)
        limit = pl_module.context_length
        if limit is None:
            return n_tokens
        used = len(pl_module.prefix_ids)  # the AR baseline's start token
        used += len(pl_module.tokenizer.encode(prompt, add_special_tokens=False)) if prompt else 0
        return min(n_tokens, limit - used)

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        jobs: list[str | None] = [None] * self.num_samples + list(self.prompts)
        records = []
        ema = find_ema(trainer)
        for index, prompt in enumerate(jobs):
            n_tokens = self._fitting_length(pl_module, prompt)
            if n_tokens < 1:
                continue
            with ema.averaged(pl_module) if ema else nullcontext():
                out = pl_module.generate_with_info(
                    prompt, n_tokens, seed=self.seed + index, record=not records
                )
            if not records and out.trajectory:
                self._save_animation(pl_module, out)
            records.append(
                {
                    "prompt": prompt,
                    "text": out.texts[0],
                    **out.settings,
                    "nfe": out.nfe,
                    "seconds": round(out.seconds, 4),
                    "tokens_per_second": round(out.tokens_per_second, 1),
                    "seed": self.seed + index,
                    "step": trainer.global_step,
                }
            )
        write_jsonl_atomic(self.path, records)
        self.records = records
        self._log_to_wandb(trainer, records)
        if self.show:
            console = Console()
            for record in records:
                title = f"prompt: {record['prompt']!r}" if record["prompt"] else "unconditional"
                console.print(Panel(record["text"], title=title, expand=False))
            console.print(f"samples written to {self.path}")
