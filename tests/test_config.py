"""Every option of every config group composes and instantiates; bad options fail at compose time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

from conftest import CONF_DIR, compose_config
from llada.diffusion.remasking import make_remasking
from llada.diffusion.schedules import MaskingSchedule
from llada.diffusion.token_choice import make_token_chooser
from llada.generation import GenerationSettings

GROUPS = [
    "model", "data", "masking", "sampler", "remasking", "optim", "trainer", "logger", "callbacks",
    "experiment", "debug",
]  # fmt: skip
# Options that cannot run on a CPU-only machine are composed as written, then instantiated on CPU.
CPU_FALLBACK = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


ALL_OPTIONS = [(group, option) for group in GROUPS for option in options(group)]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local HF masked LM directory standing in for a hub name (the hub is unreachable here)."""
    path = tmp_path_factory.mktemp("bert")
    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64,
    )  # fmt: skip
    BertForMaskedLM(config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local HF causal LM directory (model=hf_causal) standing in for a hub name."""
    path = tmp_path_factory.mktemp("gpt2")
    GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2)).save_pretrained(path)
    return str(path)


def compose_train(overrides: list[str]) -> DictConfig:
    """Compose like the CLI does, with the `hydra:` resolver available (logger names use it)."""
    cfg = compose_config("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def extra_overrides(
    group: str, option: str, tmp_path: Path, bert_dir: str, gpt2_dir: str
) -> list[str]:
    needs = {
        ("model", "hf"): [f"model.name_or_path={bert_dir}"],
        ("model", "hf_causal"): [f"model.name_or_path={gpt2_dir}"],
        ("data", "text_files"): [f"data.path={tmp_path}"],
        ("data", "shakespeare"): [],
        ("data", "preferences"): [f"data.path={tmp_path / 'preferences.jsonl'}"],
    }
    return needs.get((group, option), [])


def test_every_group_has_options() -> None:
    for group in GROUPS:
        assert options(group), f"conf/{group}/ is empty"


META_OPTIONS = {("model", "llada_8b")}


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_option_composes_and_instantiates(
    group: str, option: str, tmp_path, bert_dir, gpt2_dir
) -> None:
    overrides = [
        f"{group}={option}",
        f"run_dir={tmp_path}",
        *extra_overrides(group, option, tmp_path, bert_dir, gpt2_dir),
    ]
    cfg = compose_train(overrides)
    assert group in ("experiment", "debug") or cfg[group] is not None

    # 8B-parameter shapes are built on the meta device: checked without using memory.
    with torch.device("meta" if (group, option) in META_OPTIONS else "cpu"):
        backbone = instantiate(cfg.model)(vocab_size=64)
        logits = backbone(torch.randint(0, 64, (2, 8)), None)
    assert logits.shape == (2, 8, 64)

    datamodule = instantiate(cfg.data)
    assert datamodule.block_size == cfg.data.block_size

    schedule = instantiate(cfg.masking)
    assert isinstance(schedule, MaskingSchedule)
    assert 0.0 < float(schedule.mask_prob(torch.tensor([0.5]))) <= 1.0

    settings = GenerationSettings.from_groups(cfg.sampler, cfg.remasking).as_dict()
    make_token_chooser(
        settings["sampler"],
        temperature=settings["temperature"],
        top_k=settings["top_k"],
        top_p=settings["top_p"],
    )
    make_remasking(settings["remasking"])

    optimizer = instantiate(cfg.optim.optimizer)(backbone.parameters())
    instantiate(cfg.optim.scheduler)(optimizer)

    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    loggers = [instantiate(c) for c in cfg.logger.values() if c is not None]
    fallback = []
    if group == "trainer":
        fallback = list(CPU_FALLBACK)
        if not isinstance(cfg.trainer.strategy, str):
            # A strategy object (FSDP) is built on its own; its Trainer needs a GPU.
            assert type(instantiate(cfg.trainer.strategy)).__name__.endswith("Strategy")
            fallback.append("trainer.strategy=auto")
    on_cpu = compose_train([*overrides, *fallback]) if fallback else cfg
    trainer = instantiate(on_cpu.trainer, callbacks=callbacks, logger=loggers or False)
    expected_steps = 1 if cfg.trainer.get("fast_dev_run") else cfg.trainer.max_steps
    assert trainer.max_steps == expected_steps


@pytest.mark.parametrize(
    "override", ["model=nope", "masking=nope", "sampler=nope", "remasking=nope"]
)
def test_unknown_option_names_the_allowed_ones(override: str) -> None:
    group = override.split("=")[0]
    with pytest.raises(MissingConfigException) as info:
        compose_train([override])
    message = str(info.value)
    assert f"Could not find '{group}/nope'" in message
    for allowed in options(group):
        assert allowed in message


def test_unknown_key_fails_at_compose_time() -> None:
    with pytest.raises(ConfigCompositionException, match="no_such_key"):
        compose_train(["model.no_such_key=1"])
