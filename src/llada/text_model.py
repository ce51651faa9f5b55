"""The text side of a model, without Lightning: generate, infill and score text.

`TextAPI` holds the text methods and the parts they need (backbone, tokenizer, objective,
generation settings); `DiffusionLM` (the LightningModule, for training) and `TextModel` (plain
torch, for generation and evaluation) share it, so both give the same outputs from the same
checkpoint. `load_text_model` rebuilds a `TextModel` from a `.ckpt` without importing Lightning:
a one-off `python -m llada.generate` starts in about a second instead of five.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from llada import checkpoint_format
from llada.data.tokenizer import eos_id
from llada.diffusion.mdm import MaskedDiffusion
from llada.diffusion.objective import GREEDY_CHECKS, Objective
from llada.diffusion.schedules import MaskingSchedule
from llada.generation import Generation, GenerationSettings, TextCodec, generate_text, infill_text
from llada.models.backbone import require_backbone


class TextAPI:
    """Text in, text out, for any objective; mixed into an `nn.Module` that sets the parts."""

    backbone: nn.Module
    tokenizer: PreTrainedTokenizerBase
    objective: Objective
    generation: GenerationSettings
    mask_id: int
    device: torch.device
    training: bool

    def set_parts(
        self,
        backbone: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        schedule: MaskingSchedule | None,
        generation: dict[str, Any] | GenerationSettings | None,
        objective: Objective | Callable[..., Objective] | None,
        objective_options: dict[str, Any],
    ) -> None:
        """`objective`: a built objective, or a factory (a class, a Hydra partial) that gets the
        tokenizer's ids, `schedule` and `objective_options` (default: LLaDA's MaskedDiffusion)."""
        if tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no mask token; add one with ensure_mask_token()")
        require_backbone(backbone)
        self.backbone, self.tokenizer = backbone, tokenizer
        self.mask_id = int(tokenizer.mask_token_id)
        if not isinstance(objective, Objective):
            objective = (objective or MaskedDiffusion)(
                mask_id=self.mask_id,
                eos_id=eos_id(tokenizer, required=False),
                schedule=schedule,
                **objective_options,
            )
        self.objective = objective
        self.objective.check_backbone(backbone)
        self.objective.bind(backbone, tokenizer)
        if not isinstance(generation, GenerationSettings):
            generation = GenerationSettings.from_dict(generation)
        self.objective.check_generation(generation.cfg_scale)  # bad settings fail before work
        self.generation = generation

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, **backbone_options: Any
    ) -> Tensor:
        """Logits (B, L, V); `backbone_options` (kv, attention, output_mask, output_columns)
        go to the backbone."""
        return self.backbone(input_ids, attention_mask, **backbone_options)

    @property
    def schedule(self) -> MaskingSchedule:
        return self.objective.schedule

    @property
    def lm_kind(self) -> str:
        return self.objective.lm_kind

    @property
    def context_length(self) -> int | None:
        return self.backbone.max_len

    @property
    def supports_output_mask(self) -> bool:
        """Whether `forward(..., output_mask=)` computes the head at those positions only."""
        return bool(getattr(self.backbone, "supports_output_mask", False))

    @property
    def supports_output_columns(self) -> bool:
        """Whether `forward(..., output_columns=(start, end))` computes only those columns."""
        return bool(getattr(self.backbone, "supports_output_columns", False))

    @property
    def max_len(self) -> int | None:
        """The backbone's context (what decoders that slide a window read)."""
        return self.backbone.max_len

    @property
    def prefix_ids(self) -> list[int]:
        """Ids the objective puts before every prompt (the AR baseline's start token)."""
        return list(self.objective.prefix_ids)

    @property
    def codec(self) -> TextCodec:
        return TextCodec(
            self.tokenizer,
            self.mask_id,
            self.objective.prefix_ids,
            self.context_length,
            self.objective.sliding_window,
        )

    # ------------------------------------------------------------- generation
    def settings(self, **overrides: Any) -> GenerationSettings:
        """The run's generation settings with the keys a call passed (None means none, e.g.
        block_length=None is one block, not "the default"); the objective's checks applied."""
        settings = self.generation.replace(**overrides)
        self.objective.check_generation(settings.cfg_scale)
        return settings

    @torch.no_grad()
    def generate_with_info(
        self,
        prompt: str | list[str] | None = None,
        n_tokens: int | None = None,
        *,
        num_samples: int = 1,
        seed: int | None = None,
        stop_at_eos: bool = True,
        record: bool = False,
        **overrides: Any,
    ) -> Generation:
        """Like `generate`, plus the ids, NFE (forward passes), wall seconds and settings used."""
        settings = self.settings(
            **overrides, **({} if n_tokens is None else {"n_tokens": n_tokens})
        )
        prompts = [prompt] * num_samples if isinstance(prompt, str) or prompt is None else prompt
        return generate_text(self, prompts, settings, seed, stop_at_eos, record)

    def generate(
        self, prompt: str | list[str] | None = None, n_tokens: int | None = None, **kwargs: Any
    ) -> str | list[str]:
        """Text after the prompt: a str for one prompt (or None), a list for a list of prompts.

        Options (defaults from the run's `sampler`/`remasking` config): the keys of
        `GenerationSettings` (steps, block_length, sampler, remasking, remasking_options,
        temperature, top_k, top_p, cfg_scale, ...), seed, num_samples (a list when > 1).
        """
        out = self.generate_with_info(prompt, n_tokens, **kwargs)
        single = not isinstance(prompt, list) and kwargs.get("num_samples", 1) == 1
        return out.texts[0] if single else out.texts

    @torch.no_grad()
    def infill_with_info(
        self, template: str | list[str], *, seed: int | None = None, record: bool = False,
        **overrides: Any,
    ) -> Generation:  # fmt: skip
        """Fill `[MASK]xN` slots anywhere in a text (any order: the masks may precede the text).

        Returns the whole filled texts. Blocks default to one (no left-to-right bias).
        """
        templates = [template] if isinstance(template, str) else list(template)
        encoded = [self.codec.template_ids(t) for t in templates]
        return self.infill_ids(encoded, seed=seed, record=record, prompts=templates, **overrides)

    @torch.no_grad()
    def infill_ids(
        self, encoded: list[list[int]], *, seed: int | None = None, record: bool = False,
        prompts: list[str] | None = None, **overrides: Any,
    ) -> Generation:  # fmt: skip
        """Fill the mask ids of token-id rows. `tokens` (B, W) is the left-padded filled canvas:
        row b's ids (after `prefix_ids`) are its last len(prefix_ids) + len(encoded[b]) columns.
        """
        # One block unless asked: the run's left-to-right blocks do not fit masks anywhere.
        settings = self.settings(**{"block_length": None, **overrides})
        return infill_text(self, encoded, settings, seed, record, prompts)

    def infill(self, template: str | list[str], **kwargs: Any) -> str | list[str]:
        """`m.infill("The [MASK]x5 sat on the mat")` -> the filled text (a list for a list)."""
        out = self.infill_with_info(template, **kwargs)
        return out.texts[0] if isinstance(template, str) else out.texts

    # ------------------------------------------------------------- likelihood
    @torch.no_grad()
    def log_likelihood(
        self,
        prompt: str | list[str],
        answer: str | list[str],
        mc_samples: int = 128,
        batch_size: int = 32,
        seed: int = 0,
        return_stderr: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """log p(answer | prompt) in nats per pair: the objective's bound (LLaDA eq. 6 for mdm,
        exact for ar). Prompt and answer are tokenized without special tokens.
        Returns a (N,) tensor (and its standard errors if asked)."""
        pairs = [
            (self._ids(prompt_ids), self._ids(answer_ids))
            for prompt_ids, answer_ids in self.codec.answer_pairs(prompt, answer)
        ]
        was_training = self.training
        self.eval()
        try:
            values, errors = self.objective.log_likelihood(
                self, pairs, mc_samples=mc_samples, batch_size=batch_size, seed=seed
            )
        finally:
            self.train(was_training)
        return (values.cpu(), errors.cpu()) if return_stderr else values.cpu()

    @torch.no_grad()
    def score_ids(
        self, context: list[int], answer: list[int], *, mc_samples: int = 128,
        batch_size: int = 32, seed: int = 0, greedy_check: str = "one_pass",
    ) -> tuple[float, bool]:  # fmt: skip
        """(log p(answer | context) or its bound, is it the greedy answer) for token ids.

        lm-eval's `loglikelihood`; the context already holds `prefix_ids`.
        """
        if greedy_check not in GREEDY_CHECKS:
            raise ValueError(f"greedy_check={greedy_check!r}; allowed: {', '.join(GREEDY_CHECKS)}")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return self.objective.score(
            self, self._ids(context), self._ids(answer), mc_samples=mc_samples,
            batch_size=batch_size, generator=generator, greedy_check=greedy_check,
        )  # fmt: skip

    def _ids(self, ids: list[int]) -> Tensor:
        return torch.tensor(ids, dtype=torch.long, device=self.device)


class TextModel(TextAPI, nn.Module):
    """A trained model for generation and scoring: plain torch, the text API of `DiffusionLM`."""

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        schedule: MaskingSchedule | None = None,
        generation: dict[str, Any] | GenerationSettings | None = None,
        objective: Objective | Callable[..., Objective] | None = None,
        **objective_options: Any,
    ) -> None:
        super().__init__()
        self.set_parts(backbone, tokenizer, schedule, generation, objective, objective_options)
        self.data_config: dict[str, Any] | None = None
        self.tokens_seen = 0

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device


def load_text_model(
    checkpoint_path: str | Path, map_location: str | torch.device = "cpu", use_ema: bool = True
) -> TextModel:
    """Rebuild a checkpoint's model for generation (weights, EMA when kept, objective state)."""
    checkpoint, meta = checkpoint_format.read(checkpoint_path, map_location)
    model = TextModel(**checkpoint_format.build_parts(meta))
    checkpoint_format.load_weights(model, checkpoint, meta, use_ema)
    model.tokens_seen = int(meta.get("tokens_seen", 0))
    return model.to(map_location).eval()
