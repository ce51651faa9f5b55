"""Compose-time checks of the values users set, so a bad one fails in one line before any work.

Each config group users set values in has a dataclass schema (an OmegaConf structured config).
Merging the group's values into `OmegaConf.structured(schema)` rejects wrong types (and, for a
closed group, unknown keys); each field's `check` rule gives its allowed range; `Relation`s tie keys
together (t_min < t_max, enough steps for the blocks). Every problem is a `ValueError` with one
line naming the full key, the value and what is allowed, e.g.
`sampler.top_p=1.5 is out of range: allowed 0 < top_p <= 1 or null`.

Only declared keys are checked: open groups (model, data, trainer, optim) keep any other key, and a
`_target_` this file does not know (your own model, schedule or data module) is not checked at all.
The classes stay the authority at run time; this only makes their errors arrive before data
preparation and training instead of after.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, make_dataclass
from types import UnionType
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from llada.checks import AnyOf, OneOf, Range, invalid, option, show
from llada.data.tokenizer import SPECIAL_TOKENS, TOKENIZER_BUILDERS
from llada.diffusion.block_diffusion import BlockDiffusion
from llada.diffusion.mdm import MaskedDiffusion
from llada.diffusion.next_token import NextToken
from llada.diffusion.remasking import REMASKINGS
from llada.diffusion.schedules import (
    CosineSchedule,
    FixedRatioSchedule,
    LinearSchedule,
    PowerSchedule,
)
from llada.generation import GenerationSettings
from llada.models.native import NativeTransformer

__all__ = ["check_generate_config", "check_train_config"]


@dataclass(frozen=True)
class Relation:
    """A rule between keys: `holds(*values)`; the first key is the one reported.

    Keys are relative to the group of the schema that declares the relation (full keys in the
    cross-group tables). A relation whose first key is absent is skipped; other absent or null keys
    reach `holds` as None. `allowed` is formatted with the first key's name, then `key=value` for
    the others.
    """

    keys: tuple[str, ...]
    holds: Callable[..., bool]
    allowed: str
    problem: str = "is out of range"

    def check(self, cfg: DictConfig, prefix: str = "") -> None:
        keys = [f"{prefix}.{key}" if prefix else key for key in self.keys]
        absent = object()
        values = [OmegaConf.select(cfg, key, default=absent) for key in keys]
        if values[0] is absent:
            return
        values = [None if value is absent else value for value in values]
        if not self.holds(*values):
            others = [
                f"{key}={show(value)}" for key, value in zip(keys[1:], values[1:], strict=True)
            ]
            raise invalid(keys[0], values[0], self.problem, self.allowed.format(keys[0], *others))


def blocks(n_tokens: int, block_length: int | None, context: int | None) -> int:
    """Blocks the end-of-run samples decode: unconditional ones are cut to the model's context."""
    length = n_tokens if context is None else min(n_tokens, context)
    return 1 if block_length is None else math.ceil(length / block_length)


# ---------------------------------------------------------------------------------------- schemas
def sampler_schema() -> type:
    """conf/sampler: the sampler keys of `GenerationSettings` (`sampler` is the group's `name`),
    with its defaults and rules; every key is a generate() option, so the group is closed."""
    hints = get_type_hints(GenerationSettings)
    specs = [
        (
            "name" if spec.name == "sampler" else spec.name,
            hints[spec.name],
            field(default=spec.default, metadata=spec.metadata),
        )
        for spec in fields(GenerationSettings)
        if spec.name == "sampler" or spec.name in GenerationSettings.sampler_keys()
    ]
    return make_dataclass("SamplerSchema", specs)


SamplerSchema = sampler_schema()


@dataclass
class RemaskingSchema:
    """conf/remasking: `name` plus the strategy's constructor options (closed)."""

    name: str = option("low_confidence", OneOf(tuple(REMASKINGS)))


@dataclass
class ThresholdRemaskingSchema(RemaskingSchema):
    threshold: float = option(0.9, Range(0, 1))  # null is a type error: the strategy needs one


@dataclass
class FactorRemaskingSchema(RemaskingSchema):
    factor: float = option(1.0, Range(0, low_open=True))


@dataclass
class RemdmRemaskingSchema(RemaskingSchema):
    sigma: float = option(0.05, Range(0, 1, high_open=True))
    count: int | None = option(None, Range(0))  # set: a fixed count instead of the fraction sigma


@dataclass
class ScheduleSchema:
    """conf/masking: the constructor options of the schedules (closed per `_target_`)."""

    eps: float = option(1e-3, Range(0, 1, high_open=True))
    t_min: float = option(0.0, Range(0, 1))
    t_max: float = option(1.0, Range(0, 1))
    relations: ClassVar[tuple[Relation, ...]] = (
        Relation(("t_min", "t_max"), lambda low, high: low < high, "{0} < {1}"),
    )


@dataclass
class PowerScheduleSchema(ScheduleSchema):
    k: float = option(2.0, Range(0, low_open=True))


@dataclass
class FixedRatioScheduleSchema(ScheduleSchema):
    ratio: float = option(0.15, Range(0, 1, low_open=True))


@dataclass
class NativeModelSchema:
    """model=tiny/small/ar_*: the native transformer's sizes."""

    dim: int = option(192, Range(1))
    n_layers: int = option(4, Range(1))
    n_heads: int = option(4, Range(1))
    mlp_hidden: int | None = option(None, Range(1))
    max_len: int = option(128, Range(1))
    tie_embeddings: bool = True
    causal: bool = False
    token_shift: bool = False
    init_from: str | None = None
    relations: ClassVar[tuple[Relation, ...]] = (
        Relation(
            ("dim", "n_heads"),
            lambda dim, heads: dim % (2 * heads) == 0,
            "{0} a multiple of 2 x {1} (whole, even rotary heads)",
        ),
    )


@dataclass
class DistilbertModelSchema:
    """model=distilbert: sizes of a fresh model; a pretrained one brings its own (no conflict)."""

    pretrained: str | None = None
    dim: int = option(256, Range(1))
    n_layers: int = option(4, Range(1))
    n_heads: int = option(4, Range(1))
    hidden_dim: int = option(1024, Range(1))
    max_position_embeddings: int = option(512, Range(1))
    dropout: float = option(0.0, Range(0, 1, high_open=True))
    relations: ClassVar[tuple[Relation, ...]] = (
        Relation(
            ("dim", "n_heads", "pretrained"),
            lambda dim, heads, pretrained: pretrained is not None or dim % heads == 0,
            "{0} a multiple of {1} (unless model.pretrained brings its own sizes)",
        ),
    )


@dataclass
class DataSchema:
    """conf/data (both data modules): the keys every corpus shares; the rest stay open."""

    block_size: int = option(128, Range(2))
    batch_size: int = option(32, Range(1))
    val_fraction: float = option(0.05, Range(0, 1, low_open=True, high_open=True))
    vocab_size: int = option(2048, Range(len(SPECIAL_TOKENS) + 1))  # the special tokens and more
    tokenizer_kind: str = option("wordpiece", OneOf(tuple(TOKENIZER_BUILDERS)))
    num_workers: int = option(0, Range(0))
    num_proc: int | None = option(None, Range(1))
    seed: int = 0
    packing: bool = True


@dataclass
class HubCorpusSchema:
    """data=hub: streaming reads rows lazily, so it needs a document count to stop at."""

    streaming: bool = False
    max_documents: int | None = option(None, Range(1))
    relations: ClassVar[tuple[Relation, ...]] = (
        Relation(
            ("max_documents", "streaming"),
            lambda count, streaming: count is not None or not streaming,
            "{0} >= 1 when {1} (streaming reads the first N documents)",
            problem="is missing",
        ),
    )


@dataclass
class ModuleSchema:
    """train.yaml `module`: DiffusionLM's training options."""

    val_mc_samples: int = option(4, Range(1))
    val_seed: int = 1234
    loss_buckets: int = option(10, Range(0))
    nonfinite_loss: str = option("stop", OneOf(("stop", "skip")))
    compile_backbone: bool = False


@dataclass
class MaskedDiffusionSchema:
    """objective=mdm: the masked diffusion objective's training options (closed)."""

    antithetic_time: bool = True
    random_length_prob: float = option(0.01, Range(0, 1))
    cfg_prompt_dropout: float = option(0.0, Range(0, 1))
    causal_anneal_steps: int = option(0, Range(0))


@dataclass
class BlockDiffusionSchema:
    """objective=bd3: block diffusion's options (closed)."""

    block_size: int = option(16, Range(1))
    antithetic_time: bool = True
    zero_mask_prob: bool = True
    clip_search: Any = None
    kv_cache: bool = True
    causal_anneal_steps: int = option(0, Range(0))


@dataclass
class NextTokenSchema:
    """objective=ar: no options (closed)."""


def importable(path: Any) -> bool:
    """A `_target_` that names something Hydra can import (a reward function, an estimator)."""
    module_name, _, name = str(path).rpartition(".")
    try:
        return hasattr(importlib.import_module(module_name), name)
    except ImportError:  # a module that does not exist, or one whose imports fail
        return False


def target_exists(key: str, example: str) -> Relation:
    return Relation(
        (f"{key}._target_",),
        importable,
        f"an importable function or class, e.g. {example}",
        problem="does not exist",
    )


@dataclass
class GRPOSchema(MaskedDiffusionSchema):
    """objective=grpo: diffu-GRPO's options (closed; the MDM's are inherited)."""

    reward: Any = None
    group_size: int = option(4, Range(2))
    inner_steps: int = option(1, Range(1))
    clip_eps: float = option(0.2, Range(0, low_open=True))
    kl_beta: float = option(0.04, Range(0))
    scale_rewards: bool = True
    estimator: Any = None
    temperature: float = option(1.0, Range(0))
    steps: int | None = option(None, Range(1))
    block_length: int | None = option(None, Range(1))
    remasking: Any = None
    reference: str | None = None
    relations: ClassVar[tuple[Relation, ...]] = (
        target_exists("reward", "llada.data.rewards.sudoku_solved (see llada.data.rewards)"),
        target_exists("estimator", "llada.diffusion.policy_logprob.MeanFieldLogProbs"),
        target_exists("remasking", "llada.diffusion.remasking.LowConfidenceRemasking"),
    )


@dataclass
class VRPOSchema(MaskedDiffusionSchema):
    """objective=vrpo: DPO with ELBOs and LLaDA 1.5's variance reductions (closed)."""

    beta: float = option(0.1, Range(0, low_open=True))
    estimator: Any = None
    antithetic: bool = True
    reference: str | None = None
    relations: ClassVar[tuple[Relation, ...]] = (
        target_exists("estimator", "llada.diffusion.policy_logprob.ELBOLogProbs"),
    )


@dataclass
class TrainerSchema:
    """conf/trainer: the loop's counts; Lightning checks the rest (accelerator, precision)."""

    max_steps: int = option(750, AnyOf((Range(1), OneOf((-1,)))))
    # An integer counts steps, a float is a fraction of an epoch (Lightning's convention).
    val_check_interval: int | float = option(
        250, AnyOf((Range(1, kind=int), Range(0, 1, low_open=True, kind=float)))
    )
    limit_val_batches: int | float = option(
        1.0, AnyOf((Range(0, kind=int), Range(0, 1, kind=float)))
    )
    log_every_n_steps: int = option(10, Range(1))
    accumulate_grad_batches: int = option(1, Range(1))
    gradient_clip_val: float | None = option(None, Range(0))
    num_nodes: int = option(1, Range(1))


@dataclass
class OptimSchema:
    weight_decay: float = option(0.1, Range(0))


@dataclass
class OptimizerSchema:
    lr: float = option(2e-3, Range(0, low_open=True))


@dataclass
class LRSchedulerSchema:
    warmup_steps: int = option(50, Range(0))
    min_ratio: float = option(0.1, Range(0, 1))


@dataclass
class TrainSchema:
    """train.yaml's own keys."""

    seed: int = 0
    global_batch_size: int | None = option(None, Range(1))


@dataclass
class GenerateSchema:
    """generate.yaml's own keys."""

    n_tokens: int | None = option(None, Range(1))
    num_samples: int = option(1, Range(1))
    seed: int = 0
    plain: bool = True
    visualize: bool = False
    precision: str = option("auto", OneOf(("auto", "32-true", "bf16-mixed")))


@dataclass
class VizSchema:
    fps: float = option(8.0, Range(0, low_open=True))


# ---------------------------------------------------------------------------------------- groups
def target(obj: Any) -> str:
    """The `_target_` string that instantiates `obj`."""
    return f"{obj.__module__}.{obj.__qualname__}"


# Named, not imported: the data modules bring Lightning and `datasets`, the Hugging Face
# wrappers the transformers models, which checking a generation config must not load (a test
# checks that the names resolve).
TEXT_DATA = "llada.data.datamodule.TextDataModule"
SFT_DATA = "llada.data.sft.SFTDataModule"
HUB_CORPUS = "llada.data.sources.hub_dataset"
HF_DISTILBERT = "llada.models.hf.distilbert"
HF_MASKED_LM = "llada.models.hf.masked_lm"
HF_CAUSAL_LM = "llada.models.hf_causal.causal_lm"
GRPO_OBJECTIVE = "llada.diffusion.grpo.DiffuGRPO"
VRPO_OBJECTIVE = "llada.diffusion.vrpo.VRPO"
NAMED_TARGETS = (
    TEXT_DATA, SFT_DATA, HUB_CORPUS, HF_DISTILBERT, HF_MASKED_LM, HF_CAUSAL_LM, GRPO_OBJECTIVE,
    VRPO_OBJECTIVE,
)  # fmt: skip


@dataclass(frozen=True)
class Group:
    """Where a schema applies: `path` in the config, picked by the value of `by` if it varies.

    closed: every key of the group must be declared (they all go to one constructor).
    known_only: a `by` value without a schema is an error, not someone else's class.
    """

    path: str
    schemas: type | Mapping[str, type]
    by: str | None = None
    closed: bool = False
    known_only: bool = False

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def schema_for(self, node: DictConfig) -> type | None:
        if not isinstance(self.schemas, Mapping):
            return self.schemas
        choice = node.get(self.by)
        if choice not in self.schemas and self.known_only:
            raise invalid(
                self.key(self.by),
                choice,
                "is not an option",
                OneOf(tuple(self.schemas)).describe(""),
            )
        return self.schemas.get(choice)


HF_TARGETS = (HF_DISTILBERT, HF_MASKED_LM)  # Hugging Face backbones
REMASKING_OPTIONS = {
    "threshold": ThresholdRemaskingSchema,
    "factor": FactorRemaskingSchema,
    "remdm": RemdmRemaskingSchema,
}
SHARED_GROUPS = (
    Group("sampler", SamplerSchema, closed=True),
    Group(
        "remasking",
        {name: REMASKING_OPTIONS.get(name, RemaskingSchema) for name in REMASKINGS},
        by="name",
        closed=True,
        known_only=True,
    ),
)
TRAIN_GROUPS = (
    Group("", TrainSchema),
    *SHARED_GROUPS,
    Group(
        "masking",
        {
            target(LinearSchedule): ScheduleSchema,
            target(CosineSchedule): ScheduleSchema,
            target(PowerSchedule): PowerScheduleSchema,
            target(FixedRatioSchedule): FixedRatioScheduleSchema,
        },
        by="_target_",
        closed=True,
    ),
    Group(
        "model",
        {
            target(NativeTransformer): NativeModelSchema,
            HF_DISTILBERT: DistilbertModelSchema,
        },
        by="_target_",
    ),
    Group(
        "data",
        {TEXT_DATA: DataSchema, SFT_DATA: DataSchema},
        by="_target_",
    ),
    Group("data.corpus", {HUB_CORPUS: HubCorpusSchema}, by="_target_"),
    Group("module", ModuleSchema),
    Group(
        "objective",
        {
            target(MaskedDiffusion): MaskedDiffusionSchema,
            target(NextToken): NextTokenSchema,
            target(BlockDiffusion): BlockDiffusionSchema,
            GRPO_OBJECTIVE: GRPOSchema,
            VRPO_OBJECTIVE: VRPOSchema,
        },
        by="_target_",
        closed=True,
    ),
    Group("trainer", TrainerSchema),
    Group("optim", OptimSchema),
    Group("optim.optimizer", OptimizerSchema),
    Group("optim.scheduler", LRSchedulerSchema),
)
OBJECTIVES = {
    target(MaskedDiffusion): MaskedDiffusion,
    target(NextToken): NextToken,
    target(BlockDiffusion): BlockDiffusion,
}


def attention_matches(objective: str | None, causal: bool | None, model: str | None) -> bool:
    """A known objective's attention pattern and a native/HF backbone's must agree."""
    known = (target(NativeTransformer), HF_CAUSAL_LM, *HF_TARGETS)
    if objective not in OBJECTIVES or model not in known:
        return True  # your own objective or backbone: the module checks it at build time
    attention = OBJECTIVES[objective].attention
    if attention == "block_causal":  # a pattern per call: native and HF causal ones take one
        return model in (target(NativeTransformer), HF_CAUSAL_LM) and not causal
    return (attention == "causal") == bool(causal)


TRAIN_RELATIONS = (
    Relation(
        ("objective._target_", "model.causal", "model._target_"),
        attention_matches,
        "an objective whose attention matches the backbone: objective=ar with a causal model "
        "(model=ar_tiny/ar_small), objective=mdm with a bidirectional one, objective=bd3 with "
        "a backbone that takes attention patterns (model=tiny/small, model=hf_causal) (got {1})",
        problem="does not fit the backbone",
    ),
    # The end-of-run samples decode block by block, one step at least per block; found only after
    # training otherwise. Causal models decode left to right (no blocks), block diffusion takes
    # `steps` per block, and runs that write no unconditional sample never build that plan.
    Relation(
        (
            "sampler.steps",
            "sampler.n_tokens",
            "sampler.block_length",
            "model.max_len",
            "model.causal",
            "callbacks.samples.num_samples",
            "objective._target_",
        ),
        lambda steps, n_tokens, block_length, context, causal, samples, objective: (
            bool(causal)
            or not samples
            or objective == target(BlockDiffusion)  # steps are per block of its own
            or steps >= blocks(n_tokens, block_length, context)
        ),
        "{0} >= the number of blocks, ceil(min({1}, {3}) / {2})",
    ),
    Relation(
        ("sampler.kv_cache", "model._target_"),
        lambda kv_cache, model: not kv_cache or model not in (*HF_TARGETS, HF_CAUSAL_LM),
        "{0}=false with {1} (the prefix KV cache needs the native backbone)",
        problem="is not an option",
    ),
    Relation(
        ("sampler.dual_cache", "model._target_"),
        lambda dual, model: not dual or model not in (*HF_TARGETS, HF_CAUSAL_LM),
        "{0}=false with {1} (the dual KV cache needs the native backbone)",
        problem="is not an option",
    ),
    Relation(
        ("objective.block_size", "data.block_size", "objective._target_"),
        lambda size, length, objective: (
            objective != target(BlockDiffusion) or size is None or length % size == 0
        ),
        "{0} that divides {1} (blocks tile the training sequence)",
    ),
    Relation(
        ("data.block_size", "model.max_len"),
        lambda block_size, context: context is None or block_size <= context,
        "{0} <= {1} (the model's context)",
    ),
)
GENERATE_GROUPS = (Group("", GenerateSchema), Group("viz", VizSchema), *SHARED_GROUPS)


# --------------------------------------------------------------------------------------- checking
def split_optional(hint: Any) -> tuple[list[Any], bool]:
    """(the types a field takes besides None, whether null is allowed)."""
    args = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    return [arg for arg in args if arg is not type(None)], type(None) in args


def type_name(hint: Any) -> str:
    """'an integer', 'a number or null', ... for a schema field's type."""
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    types, nullable = split_optional(hint)
    return " or ".join(names.get(kind, "a value") for kind in types) + (" or null" * nullable)


def is_hydra_key(name: str) -> bool:
    """`_target_`, `_partial_`: read by instantiate, not options of the group."""
    return name.startswith("_") and name.endswith("_")


def plain_value(node: DictConfig, name: str) -> Any:
    value = node[name]  # resolves interpolations
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def check_group(cfg: DictConfig, group: Group) -> None:
    """Types by merging into the schema, then each field's rule, then the schema's relations."""
    node = OmegaConf.select(cfg, group.path) if group.path else cfg
    if not isinstance(node, DictConfig):
        return  # an optional group set to null (generate.yaml's sampler/remasking), or absent
    schema = group.schema_for(node)
    if schema is None:
        return
    declared = {spec.name: spec for spec in fields(schema)}
    hints = get_type_hints(schema)
    names = [name for name in node if not is_hydra_key(name)] if group.closed else declared
    values = {name: plain_value(node, name) for name in names if name in node}  # no `???` ones
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
    except ConfigKeyError as error:
        name = str(error.key)
        known = "keys " + ", ".join(declared)
        raise invalid(group.key(name), values.get(name), "is not a known key", known) from None
    except ValidationError as error:
        name = str(error.key)
        check = declared[name].metadata.get("check")
        allowed = type_name(hints[name]) + (f" with {check.describe(name)}" if check else "")
        raise invalid(group.key(name), values.get(name), "has the wrong type", allowed) from None
    for name, spec in declared.items():
        check = spec.metadata.get("check")
        if check is None or name not in values or merged[name] is None:
            continue
        if not check.allows(merged[name]):
            allowed = check.describe(name) + (" or null" * split_optional(hints[name])[1])
            raise invalid(group.key(name), values[name], check.problem, allowed)
    for relation in getattr(schema, "relations", ()):
        relation.check(cfg, group.path)


def check_config(
    cfg: DictConfig, groups: tuple[Group, ...], relations: tuple[Relation, ...]
) -> None:
    for group in groups:
        check_group(cfg, group)
    for relation in relations:
        relation.check(cfg)


def check_train_config(cfg: DictConfig) -> None:
    """Raise a one-line ValueError for the first bad value of a composed `train.yaml`."""
    check_config(cfg, TRAIN_GROUPS, TRAIN_RELATIONS)


def check_generate_config(cfg: DictConfig) -> None:
    """Raise a one-line ValueError for the first bad value of a composed `generate.yaml`.

    Its sampler/remasking groups may be null: the checkpoint's settings apply, nothing to check.
    """
    check_config(cfg, GENERATE_GROUPS, ())
