"""Generation settings and the text layer: prompts and templates in, texts out.

`GenerationSettings` is the one list of generation keys, their defaults and their checks. The
`sampler` and `remasking` config groups, the API's keyword arguments, a checkpoint's stored settings
and `llada.eval`'s partial overrides all pass through it, and `config_schema` derives the sampler
group's schema from it. The text layer turns prompts into left-padded canvases, `[MASK]xN`
templates into ids, and generated ids back into text; the objective's decoder does the rest.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from llada.checks import OneOf, Range, invalid, option
from llada.data.tokenizer import eos_id
from llada.diffusion.remasking import REMASKINGS, Remasking, make_remasking
from llada.diffusion.sampling import GenerationResult
from llada.diffusion.token_choice import TOKEN_CHOOSERS, TokenChooser, make_token_chooser
from llada.models.prefix_cache import PrefixCachedLogits

MASK_SLOT = re.compile(r"\[MASK\](?:x(\d+))?")  # infilling slots: [MASK] or [MASK]x5
# Fields that are not keys of conf/sampler: the two names (each group's `name`) and the
# remasking strategy's own options (the rest of conf/remasking).
NAMED_BY_GROUP = {"sampler": ("sampler", "name"), "remasking": ("remasking", "name")}
REMASKING_OPTIONS = "remasking_options"


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate: the token chooser, the step plan, the remasking strategy and its options.

    Defaults here are the API's (a model built in Python without settings); a training run stores
    its `sampler`/`remasking` groups in the checkpoint, and those become the model's defaults.
    """

    sampler: str = option("multinomial", OneOf(tuple(TOKEN_CHOOSERS)))
    remasking: str = option("low_confidence", OneOf(tuple(REMASKINGS)))
    steps: int = option(64, Range(1))
    n_tokens: int = option(64, Range(1))
    # Need not divide n_tokens: the last block takes the remainder (sampling.block_plan).
    block_length: int | None = option(None, Range(1))
    temperature: float = option(1.0, Range(0))
    top_k: int | None = option(None, Range(1))
    top_p: float | None = option(None, Range(0, 1, low_open=True))
    cfg_scale: float = option(0.0, Range(0))  # CFG weight w (LLaDA's (w + 1) convention); 0 = off
    eos_last: bool = False  # EOS predictions commit last
    forbid_eos: bool = False  # never generate EOS
    remasking_options: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"threshold": 0.9}
    kv_cache: bool = False  # approximate prefix KV cache across a block's steps (native backbone)
    dual_cache: bool = False  # also cache the suffix after the block (Fast-dLLM DualCache)
    schedule_steps: bool = False  # tokens per step from the masking schedule (non-linear ones)

    def __post_init__(self) -> None:
        """Range-check every key and build the chooser and remasking once: bad settings fail now."""
        for spec in fields(self):
            check = spec.metadata.get("check")
            value = getattr(self, spec.name)
            if check is not None and value is not None and not check.allows(value):
                allowed = check.describe(spec.name) + (" or null" * (spec.default is None))
                raise invalid(config_key(spec.name), value, check.problem, allowed)
        object.__setattr__(self, "remasking_options", dict(self.remasking_options or {}))
        self.token_chooser()
        self.remasking_strategy()

    # ------------------------------------------------------------------ building
    @classmethod
    def names(cls) -> list[str]:
        return [spec.name for spec in fields(cls)]

    @classmethod
    def sampler_keys(cls) -> list[str]:
        """The keys of conf/sampler/*.yaml besides `name`."""
        return [key for key in cls.names() if key not in (*NAMED_BY_GROUP, REMASKING_OPTIONS)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> GenerationSettings:
        return cls().replace(**dict(values or {}))

    @staticmethod
    def group_values(
        sampler: DictConfig | Mapping | None, remasking: DictConfig | Mapping | None
    ) -> dict[str, Any]:
        """The settings the `sampler`/`remasking` groups give; absent groups and `???` keys give none.

        Train passes whole groups; `llada.generate` may pass none (the checkpoint's settings
        apply); `llada.eval` gives single keys (`sampler.steps=8`) with the rest `???`.
        """
        values = given(sampler)
        if "name" in values:
            values["sampler"] = values.pop("name")
        strategy = given(remasking)
        if "name" in strategy:
            values["remasking"] = strategy.pop("name")
            values[REMASKING_OPTIONS] = strategy  # e.g. threshold, sigma
        elif strategy:
            raise ValueError(
                f"remasking options {sorted(strategy)} need a strategy: add remasking=<name>"
            )
        return values

    @classmethod
    def from_groups(
        cls,
        sampler: DictConfig | Mapping | None,
        remasking: DictConfig | Mapping | None,
        base: GenerationSettings | None = None,
    ) -> GenerationSettings:
        """`base` (default: the API defaults) with what the config groups set."""
        return (base or cls()).replace(**cls.group_values(sampler, remasking))

    def replace(self, **overrides: Any) -> GenerationSettings:
        """These settings with some keys changed; an unknown key is a TypeError naming the allowed."""
        unknown = set(overrides) - set(self.names())
        if unknown:
            raise TypeError(
                f"unknown generation option(s) {sorted(unknown)}; allowed: {sorted(self.names())}"
            )
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (checkpoints, samples.jsonl, eval.json)."""
        values = {key: getattr(self, key) for key in self.names()}
        values[REMASKING_OPTIONS] = dict(self.remasking_options)
        return values

    def token_chooser(self) -> TokenChooser:
        return make_token_chooser(
            self.sampler, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p
        )

    def remasking_strategy(self) -> Remasking:
        return make_remasking(self.remasking, **self.remasking_options)


def config_key(name: str) -> str:
    """The command-line key of a settings field (`sampler.steps`, `remasking.threshold`, ...)."""
    if name in NAMED_BY_GROUP:
        return f"{NAMED_BY_GROUP[name][0]}.name"
    return "remasking" if name == REMASKING_OPTIONS else f"sampler.{name}"


def given(node: DictConfig | Mapping | None) -> dict[str, Any]:
    """The keys of a config node that were set (`???` = not given)."""
    if node is None:
        return {}
    if not isinstance(node, DictConfig):
        node = OmegaConf.create(dict(node))
    values = OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
    return {key: values[key] for key in node if not OmegaConf.is_missing(node, key)}


# ---------------------------------------------------------------------------------- text layer
@dataclass
class Generation:
    """Texts plus what a researcher reports with them."""

    prompts: list[str | None]
    texts: list[str]
    tokens: Tensor  # (B, n_tokens) generated ids (infilling: (B, W) the filled canvas)
    nfe: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    trajectory: list[Tensor] = field(default_factory=list)  # canvas per step when record=True
    gen_start: int = 0  # the first generated column of the canvas the decoder filled
    sample_nfe: list[int] = field(default_factory=list)  # per sample: passes while it had masks

    @property
    def tokens_per_second(self) -> float:
        return self.tokens.numel() / max(self.seconds, 1e-9)


@dataclass(frozen=True)
class TextCodec:
    """Tokenizer-side work of generation: canvases from prompts and templates, texts from ids.

    `prefix` ids go before every prompt or template (the AR baseline's start token).
    """

    tokenizer: PreTrainedTokenizerBase
    mask_id: int
    prefix: tuple[int, ...] = ()
    context: int | None = None  # the model's context length (None: unbounded)
    sliding_window: bool = False  # the decoder slides past the context: only prompts must fit

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.mask_id if pad is None else int(pad)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def prompt_canvas(self, prompts: list[str], n_tokens: int) -> tuple[Tensor, Tensor]:
        """Left-padded [prefix | prompt | MASK * n_tokens]. -> (canvas (B, L), attention (B, L))."""
        encoded = [[*self.prefix, *self.encode(prompt)] for prompt in prompts]
        width = max(len(ids) for ids in encoded) + n_tokens
        if self.context is not None and self.sliding_window and width - n_tokens > self.context:
            raise ValueError(
                f"the prompt has {width - n_tokens} tokens, more than the model context of "
                f"{self.context}; shorten the prompt"
            )
        if self.context is not None and not self.sliding_window and width > self.context:
            raise ValueError(
                f"prompt ({width - n_tokens} tokens) + n_tokens ({n_tokens}) = {width} exceeds the "
                f"model context of {self.context} tokens; shorten the prompt or lower n_tokens"
            )
        rows = [ids + [self.mask_id] * n_tokens for ids in encoded]
        return self.left_padded(rows, width)

    def template_ids(self, template: str) -> list[int]:
        """Token ids of a template whose `[MASK]` or `[MASK]xN` slots become N mask tokens."""
        ids: list[int] = []
        pieces = MASK_SLOT.split(template)  # text, count, text, count, ..., text
        for index, piece in enumerate(pieces):
            if index % 2:
                ids.extend([self.mask_id] * int(piece or 1))
            elif piece.strip():
                ids.extend(self.encode(piece.strip()))
        return ids

    def template_canvas(self, encoded: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Left-padded [prefix | ids] rows holding mask ids to fill. -> (canvas, attention) (B, W)."""
        rows = [[*self.prefix, *ids] for ids in encoded]
        if not any(self.mask_id in ids for ids in rows):
            raise ValueError("the template has no [MASK] slot; write e.g. 'The [MASK]x5 sat'")
        width = max(len(ids) for ids in rows)
        if self.context is not None and width > self.context:
            raise ValueError(
                f"template has {width} tokens, more than the context of {self.context}"
            )
        return self.left_padded(rows, width)

    def left_padded(self, rows: list[list[int]], width: int) -> tuple[Tensor, Tensor]:
        canvas = torch.full((len(rows), width), self.pad_id, dtype=torch.long)  # (B, W)
        attention = torch.zeros_like(canvas)  # (B, W)
        for row, ids in enumerate(rows):
            canvas[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        return canvas, attention

    def answer_pairs(
        self, prompt: str | list[str], answer: str | list[str]
    ) -> list[tuple[list[int], list[int]]]:
        """(prompt ids, answer ids) per pair, for likelihoods: answers non-empty, all in context."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        answers = [answer] if isinstance(answer, str) else list(answer)
        if len(prompts) != len(answers):
            raise ValueError(f"got {len(prompts)} prompts but {len(answers)} answers")
        pairs = []
        for prompt_text, answer_text in zip(prompts, answers, strict=True):
            prompt_ids, answer_ids = self.encode(prompt_text), self.encode(answer_text)
            if not answer_ids:
                raise ValueError(f"answer {answer_text!r} has no tokens")
            width = len(prompt_ids) + len(answer_ids)
            if self.context is not None and width > self.context:
                raise ValueError(
                    f"prompt + answer has {width} tokens, more than the context {self.context}"
                )
            pairs.append((prompt_ids, answer_ids))
        return pairs

    def decode(self, generated: Tensor, eos_id: int | None, stop_at_eos: bool) -> list[str]:
        """Texts of generated ids (B, n), each cut at its first EOS when asked."""
        texts = []
        for row in generated.tolist():
            if stop_at_eos and eos_id in row:
                row = row[: row.index(eos_id)]
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts

    def decode_visible(self, canvas: Tensor, attention: Tensor) -> list[str]:
        """The whole filled texts of template canvases (padding left out)."""
        return [
            self.tokenizer.decode(ids[mask.bool()].tolist(), skip_special_tokens=True).strip()
            for ids, mask in zip(canvas.cpu(), attention.cpu(), strict=True)
        ]


# ------------------------------------------------------------------------------------ decoding
class TextLM(Protocol):
    """What the text layer needs of a model (a `DiffusionLM`)."""

    backbone: Any
    objective: Any
    tokenizer: PreTrainedTokenizerBase
    mask_id: int
    training: bool

    @property
    def device(self) -> torch.device: ...

    @property
    def codec(self) -> TextCodec: ...

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor: ...

    def train(self, mode: bool = True) -> Any: ...


def decode_canvas(
    lm: TextLM,
    canvas: Tensor,
    attention: Tensor,
    prompt_mask: Tensor,
    gen_start: int,
    settings: GenerationSettings,
    seed: int | None,
    record: bool,
) -> GenerationResult:
    """The objective's decoder on a prepared canvas (B, L), in eval mode, with a seeded RNG."""
    eos = eos_id(lm.tokenizer)
    generator = None if seed is None else torch.Generator(lm.device).manual_seed(seed)
    cached = (settings.kv_cache or settings.dual_cache) and lm.objective.prefix_cache
    logits_fn = PrefixCachedLogits(lm.backbone, dual=settings.dual_cache) if cached else lm
    was_training = lm.training
    lm.train(False)
    try:
        return lm.objective.decode(
            logits_fn,
            canvas.to(lm.device),
            steps=int(settings.steps),
            chooser=settings.token_chooser(),
            remasking=settings.remasking_strategy(),
            attention_mask=None if bool(attention.all()) else attention.to(lm.device),
            block_length=settings.block_length,
            gen_start=gen_start,
            generator=generator,
            eos_id=eos,
            eos_last=bool(settings.eos_last),
            forbid_ids=(eos,) if settings.forbid_eos else (),
            cfg_scale=float(settings.cfg_scale),
            prompt_mask=prompt_mask.to(lm.device),
            record=record,
            mask_prob=lm.objective.schedule.mask_prob if settings.schedule_steps else None,
        )
    finally:
        lm.train(was_training)


def sample_nfe(result: GenerationResult) -> list[int]:
    """Each row's own forward passes (all of the batch's when the decoder does not count)."""
    if result.row_nfe is None:
        return [result.nfe] * result.tokens.shape[0]
    return [int(n) for n in result.row_nfe]


def generate_text(
    lm: TextLM,
    prompts: list[str | None],
    settings: GenerationSettings,
    seed: int | None,
    stop_at_eos: bool,
    record: bool,
) -> Generation:
    """`n_tokens` after each prompt (None or "" = unconditional), decoded to text."""
    texts = ["" if p is None else p for p in prompts]
    n_tokens = int(settings.n_tokens)
    canvas, attention = lm.codec.prompt_canvas(texts, n_tokens)
    gen_start = canvas.shape[1] - n_tokens
    prompt_mask = attention.bool().clone()  # (B, L): the real prompt tokens
    prompt_mask[:, gen_start:] = False
    result = decode_canvas(lm, canvas, attention, prompt_mask, gen_start, settings, seed, record)
    generated = result.tokens[:, gen_start:].cpu()  # (B, n_tokens)
    return Generation(
        prompts=[p or None for p in texts],
        texts=lm.codec.decode(generated, eos_id(lm.tokenizer), stop_at_eos),
        tokens=generated,
        nfe=result.nfe,
        seconds=result.seconds,
        settings=settings.as_dict(),
        trajectory=result.trajectory,
        gen_start=gen_start,
        sample_nfe=sample_nfe(result),
    )


def infill_text(
    lm: TextLM,
    encoded: list[list[int]],
    settings: GenerationSettings,
    seed: int | None,
    record: bool,
    prompts: list[str] | None,
) -> Generation:
    """Fill the mask ids of token-id rows; the texts are the whole filled rows."""
    canvas, attention = lm.codec.template_canvas(encoded)
    prompt_mask = attention.bool() & (canvas != lm.mask_id)
    result = decode_canvas(lm, canvas, attention, prompt_mask, 0, settings, seed, record)
    return Generation(
        prompts=list(prompts) if prompts is not None else [None] * len(encoded),
        texts=lm.codec.decode_visible(result.tokens, attention),
        tokens=result.tokens.cpu(),
        nfe=result.nfe,
        seconds=result.seconds,
        settings=settings.as_dict(),
        trajectory=result.trajectory,
        sample_nfe=sample_nfe(result),
    )
