"""Compose-time config checks (llada.config_schema): every shipped option passes, bad values fail in
one line naming the key, and the schemas stay in step with the classes they describe."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields
from pathlib import Path

import lightning
import pytest
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from conftest import CONF_DIR, compose_config
from llada.config_schema import (
    GRPO_OBJECTIVE,
    REMASKING_OPTIONS,
    TRAIN_GROUPS,
    ModuleSchema,
    SamplerSchema,
    TrainerSchema,
    check_generate_config,
    check_train_config,
)
from llada.diffusion.mdm import MaskedDiffusion
from llada.diffusion.remasking import REMASKINGS
from llada.diffusion.schedules import MaskingSchedule
from llada.generation import GenerationSettings
from llada.module import DiffusionLM

# Every option of every group train.yaml composes (conf/hydra is Hydra's own).
TRAIN_DEFAULTS = OmegaConf.load(Path(CONF_DIR) / "train.yaml").defaults
GROUP_OPTIONS = [
    (group, option.stem)
    for group in sorted(
        name.removeprefix("optional ") for entry in TRAIN_DEFAULTS if isinstance(entry, DictConfig) for name in entry
    )
    if group != "hydra"
    for option in sorted((Path(CONF_DIR) / group).glob("*.yaml"))
]  # fmt: skip


def train_cfg(*overrides: str) -> DictConfig:
    return compose_config("train", overrides)


def generate_cfg(*overrides: str) -> DictConfig:
    return compose_config("generate", overrides)


@pytest.mark.parametrize(
    ("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS]
)
def test_every_shipped_train_option_passes(group: str, option: str) -> None:
    needs = {("objective", "ar"): ["model=ar_tiny"]}  # next-token training needs a causal model
    check_train_config(train_cfg(f"{group}={option}", *needs.get((group, option), [])))


GENERATE_GROUPS = [
    (None, None),  # both null: the checkpoint's settings apply
    ("greedy", None),
    ("multinomial", None),
    *((None, remasking) for remasking in REMASKINGS),
    ("greedy", "threshold"),
]


@pytest.mark.parametrize(("sampler", "remasking"), GENERATE_GROUPS)
def test_generate_options_pass_including_null_groups(
    sampler: str | None, remasking: str | None
) -> None:
    chosen = {"sampler": sampler, "remasking": remasking}
    check_generate_config(generate_cfg(*(f"{k}={v}" for k, v in chosen.items() if v)))


TRAIN_ERRORS = [
    (["sampler.top_p=1.5"], "sampler.top_p=1.5 is out of range: allowed 0 < top_p <= 1 or null"),
    (["sampler.top_p=0"], "sampler.top_p=0 is out of range: allowed 0 < top_p <= 1 or null"),
    (["sampler.top_k=0"], "sampler.top_k=0 is out of range: allowed top_k >= 1 or null"),
    (["sampler.steps=0"], "sampler.steps=0 is out of range: allowed steps >= 1"),
    (["sampler.n_tokens=0"], "sampler.n_tokens=0 is out of range: allowed n_tokens >= 1"),
    (
        ["sampler.block_length=0"],
        "sampler.block_length=0 is out of range: allowed block_length >= 1 or null",
    ),
    (
        ["sampler.temperature=-1"],
        "sampler.temperature=-1 is out of range: allowed temperature >= 0",
    ),
    (["sampler.cfg_scale=-0.5"], "sampler.cfg_scale=-0.5 is out of range: allowed cfg_scale >= 0"),
    (
        ["sampler.name=beam"],
        "sampler.name=beam is not an option: allowed one of greedy, multinomial",
    ),
    (
        ["sampler.kv_cache=maybe"],
        "sampler.kv_cache=maybe has the wrong type: allowed true or false",
    ),
    (
        ["sampler.steps=2.5"],
        "sampler.steps=2.5 has the wrong type: allowed an integer with steps >= 1",
    ),
    (["+sampler.topp=0.9"], "sampler.topp=0.9 is not a known key: allowed keys name, steps,"),
    (
        ["sampler.steps=8"],  # 64 tokens in blocks of 4: 16 blocks, at least one step each
        "sampler.steps=8 is out of range: allowed sampler.steps >= the number of blocks, "
        "ceil(min(sampler.n_tokens=64, model.max_len=128) / sampler.block_length=4)",
    ),
    (
        ["remasking=threshold", "remasking.threshold=1.5"],
        "remasking.threshold=1.5 is out of range: allowed 0 <= threshold <= 1",
    ),
    (
        ["remasking=threshold", "remasking.threshold=null"],  # the strategy needs its threshold
        "remasking.threshold=null has the wrong type: allowed a number with 0 <= threshold <= 1",
    ),
    (
        ["remasking=remdm", "remasking.sigma=1"],
        "remasking.sigma=1 is out of range: allowed 0 <= sigma < 1",
    ),
    (
        ["remasking=remdm", "remasking.count=-1"],
        "remasking.count=-1 is out of range: allowed count >= 0 or null",
    ),
    (
        ["remasking.name=best"],
        "remasking.name=best is not an option: allowed one of random, low_confidence",
    ),
    (["+remasking.threshold=0.5"], "remasking.threshold=0.5 is not a known key: allowed keys name"),
    (
        ["masking.t_min=0.8", "masking.t_max=0.2"],
        "masking.t_min=0.8 is out of range: allowed masking.t_min < masking.t_max=0.2",
    ),
    (["masking.t_max=1.5"], "masking.t_max=1.5 is out of range: allowed 0 <= t_max <= 1"),
    (["masking.eps=1"], "masking.eps=1 is out of range: allowed 0 <= eps < 1"),
    (["masking=power", "masking.k=0"], "masking.k=0 is out of range: allowed k > 0"),
    (
        ["masking=fixed_ratio", "masking.ratio=1.5"],
        "masking.ratio=1.5 is out of range: allowed 0 < ratio <= 1",
    ),
    (["data.batch_size=0"], "data.batch_size=0 is out of range: allowed batch_size >= 1"),
    (["data.block_size=1"], "data.block_size=1 is out of range: allowed block_size >= 2"),
    (["data.val_fraction=1"], "data.val_fraction=1 is out of range: allowed 0 < val_fraction < 1"),
    (["data.vocab_size=4"], "data.vocab_size=4 is out of range: allowed vocab_size >= 5"),
    (
        ["data.tokenizer_kind=char"],
        "data.tokenizer_kind=char is not an option: allowed one of wordpiece, bpe",
    ),
    (
        ["data=hub", "data.path=x", "data.corpus.streaming=true"],
        "data.corpus.max_documents=null is missing: allowed data.corpus.max_documents >= 1 when "
        "data.corpus.streaming=true",
    ),
    (
        ["data.block_size=256", "model.max_len=128"],
        "data.block_size=256 is out of range: allowed data.block_size <= model.max_len=128",
    ),
    (
        ["model.dim=100"],
        "model.dim=100 is out of range: allowed model.dim a multiple of 2 x model.n_heads=4",
    ),
    (
        ["model=distilbert", "model.n_heads=3"],
        "model.dim=256 is out of range: allowed model.dim a multiple of model.n_heads=3",
    ),
    (
        ["model=distilbert", "sampler.kv_cache=true"],
        "sampler.kv_cache=true is not an option: allowed sampler.kv_cache=false with "
        "model._target_=llada.models.hf.distilbert (the prefix KV cache needs the native backbone)",
    ),
    (
        ["module.nonfinite_loss=maybe"],
        "module.nonfinite_loss=maybe is not an option: allowed one of stop, skip",
    ),
    (
        ["module.val_mc_samples=0"],
        "module.val_mc_samples=0 is out of range: allowed val_mc_samples >= 1",
    ),
    (
        ["objective.random_length_prob=2"],
        "objective.random_length_prob=2 is out of range: allowed 0 <= random_length_prob <= 1",
    ),
    (
        ["objective.cfg_prompt_dropout=-0.1"],
        "objective.cfg_prompt_dropout=-0.1 is out of range: allowed 0 <= cfg_prompt_dropout <= 1",
    ),
    (
        ["objective=ar"],
        "objective._target_=llada.diffusion.next_token.NextToken does not fit the backbone: "
        "allowed an objective whose attention matches the backbone",
    ),
    (
        ["model=ar_tiny", "objective=mdm"],
        "objective._target_=llada.diffusion.mdm.MaskedDiffusion does not fit the backbone",
    ),
    (
        ["objective=bd3", "objective.block_size=12"],
        "objective.block_size=12 is out of range: allowed objective.block_size that divides "
        "data.block_size=128",
    ),
    (
        ["objective=bd3", "objective.block_size=0"],
        "objective.block_size=0 is out of range: allowed block_size >= 1",
    ),
    (
        ["objective=bd3", "objective.block_size=256"],
        "objective.block_size=256 is out of range: allowed objective.block_size that divides",
    ),
    (
        ["objective=bd3", "model=distilbert"],
        "objective._target_=llada.diffusion.block_diffusion.BlockDiffusion does not fit the "
        "backbone",
    ),
    (
        ["objective=bd3", "model=ar_tiny"],
        "objective._target_=llada.diffusion.block_diffusion.BlockDiffusion does not fit the "
        "backbone",
    ),
    (
        ["trainer.max_steps=0"],
        "trainer.max_steps=0 is out of range: allowed max_steps >= 1 or max_steps=-1",
    ),
    (
        ["trainer.val_check_interval=1.5"],
        "trainer.val_check_interval=1.5 is out of range: allowed integer val_check_interval >= 1 or number",
    ),
    (
        ["trainer.val_check_interval=abc"],
        "trainer.val_check_interval=abc has the wrong type: allowed an integer or a number",
    ),
    (["optim.optimizer.lr=0"], "optim.optimizer.lr=0 is out of range: allowed lr > 0"),
    (
        ["optim.scheduler.min_ratio=2"],
        "optim.scheduler.min_ratio=2 is out of range: allowed 0 <= min_ratio <= 1",
    ),
    (["seed=abc"], "seed=abc has the wrong type: allowed an integer"),
    (
        ["global_batch_size=0"],
        "global_batch_size=0 is out of range: allowed global_batch_size >= 1 or null",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "expected"), TRAIN_ERRORS, ids=[" ".join(o) for o, _ in TRAIN_ERRORS]
)
def test_bad_train_values_fail_in_one_line(overrides: list[str], expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)) as info:
        check_train_config(train_cfg(*overrides))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["n_tokens=0"], "n_tokens=0 is out of range: allowed n_tokens >= 1 or null"),
        (["num_samples=0"], "num_samples=0 is out of range: allowed num_samples >= 1"),
        (["viz.fps=0"], "viz.fps=0 is out of range: allowed fps > 0"),
        (["sampler=greedy", "sampler.top_p=2"], "sampler.top_p=2 is out of range"),
        (["remasking=remdm", "remasking.sigma=-1"], "remasking.sigma=-1 is out of range"),
    ],
)
def test_bad_generate_values_fail_in_one_line(overrides: list[str], expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        check_generate_config(generate_cfg(*overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        [
            "sampler.block_length=null",
            "sampler.top_p=1",
            "sampler.top_k=1",
            "sampler.temperature=0",
        ],
        ["sampler.n_tokens=10", "sampler.block_length=4", "sampler.steps=3"],  # last block shorter
        ["remasking=threshold", "remasking.threshold=0"],
        ["remasking=remdm", "remasking.count=2"],
        ["masking=cosine", "masking.t_min=0.3", "masking.t_max=0.31"],
        ["trainer.max_steps=-1", "trainer.val_check_interval=0.5", "trainer.limit_val_batches=2"],
        # explicit sizes next to a pretrained model are ignored by it, not a conflict
        ["model=distilbert", "model.pretrained=some/model", "model.dim=100", "model.n_heads=3"],
        ["data=sudoku", "sampler.steps=8"],  # end-of-run samples are cut to the 20-token context
        ["model=ar_tiny", "sampler.steps=1"],  # left to right: no blocks
        ["callbacks=minimal", "sampler.steps=8"],  # no end-of-run samples
        ["sampler.kv_cache=true"],  # the native backbone has the prefix cache
        ["callbacks.samples.num_samples=0", "sampler.steps=8"],  # prompted samples only
        ["data=hub", "data.path=x", "data.corpus.streaming=true", "data.corpus.max_documents=5"],
        # open groups keep keys this file does not declare
        ["+model.rope_theta=500000", "+data.corpus.min_chars=10", "+trainer.profiler=simple"],
        ["model=hf", "model.name_or_path=bert-base-uncased"],
    ],
    ids=lambda overrides: " ".join(overrides),
)
def test_valid_values_pass(overrides: list[str]) -> None:
    check_train_config(train_cfg(*overrides))


def test_checks_do_not_resolve_unrelated_interpolations() -> None:
    """`run_dir: ${hydra:runtime.output_dir}` resolves only inside a Hydra run; tests compose."""
    check_train_config(train_cfg("data=text_files"))  # data.path=??? is Hydra's to report


# ----------------------------------------------------- the schemas stay in step with the classes
def parameters(callable_: object) -> set[str]:
    return {
        name
        for name, p in inspect.signature(callable_).parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name != "self"
    }


def names(schema: type) -> set[str]:
    return {f.name for f in fields(schema)}


def test_sampler_schema_is_exactly_the_generation_options() -> None:
    """Derived from GenerationSettings: the same keys, defaults and rules (no copy of its own)."""
    options = set(GenerationSettings.names()) - {"sampler", "remasking", "remasking_options"}
    assert names(SamplerSchema) == options | {"name"}
    defaults = GenerationSettings()
    for spec in fields(SamplerSchema):
        assert spec.default == getattr(defaults, "sampler" if spec.name == "name" else spec.name)


def test_objective_schemas_are_the_objectives_options() -> None:
    group = next(g for g in TRAIN_GROUPS if g.path == "objective")
    required = {GRPO_OBJECTIVE: {"reward": lambda filled, reference: 0.0}}  # no default reward
    for target, schema in group.schemas.items():
        objective = get_object(target)(mask_id=0, eos_id=1, **required.get(target, {}))
        assert names(schema) == set(objective.options()), target
    assert MaskedDiffusion in {get_object(t) for t in group.schemas}


@pytest.mark.parametrize("name", list(REMASKINGS))
def test_remasking_schemas_are_the_strategies_options(name: str) -> None:
    schema = dict(next(g for g in TRAIN_GROUPS if g.path == "remasking").schemas)[name]
    assert schema is REMASKING_OPTIONS.get(name, schema)
    assert names(schema) == parameters(REMASKINGS[name]) | {"name"}


def test_masking_schemas_are_the_schedules_options() -> None:
    group = next(g for g in TRAIN_GROUPS if g.path == "masking")
    for target, schema in group.schemas.items():
        schedule = get_object(target)
        assert issubclass(schedule, MaskingSchedule)
        assert names(schema) == set(schedule().options()), target


def test_declared_module_trainer_and_targets_exist() -> None:
    assert names(ModuleSchema) <= parameters(DiffusionLM)
    assert names(TrainerSchema) <= parameters(lightning.Trainer)
    for group in TRAIN_GROUPS:
        if group.by == "_target_":
            for target in group.schemas:
                get_object(target)  # a renamed class must not silently switch its checks off


@pytest.mark.parametrize("path", ["sampler/multinomial.yaml", "sampler/greedy.yaml", "eval.yaml"])
def test_config_files_name_exactly_the_generation_keys(path: str) -> None:
    """conf/ spells the sampler keys (Hydra needs them to accept overrides) but src/ owns them."""
    cfg = compose_config(path.removesuffix(".yaml")) if "/" not in path else None
    node = cfg.sampler if cfg is not None else train_cfg(f"sampler={Path(path).stem}").sampler
    assert set(node) == {"name", *GenerationSettings.sampler_keys()}


def test_targets_named_without_importing_them_exist() -> None:
    from hydra.utils import get_object

    from llada.config_schema import NAMED_TARGETS

    for name in NAMED_TARGETS:
        assert callable(get_object(name)), name
