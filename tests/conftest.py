"""Test-wide settings: offline hub and wandb, a shared tokenizer/data cache, one torch thread."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update(OFFLINE_ENV)
# The tensors in tests are tiny: splitting them across threads costs more than it saves, and with
# another job on the machine two threads can be 100x slower.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# Where CLI runs that keep nothing put Hydra's files (its <job>.log), instead of the checkout.
SCRATCH_RUN_DIR = f"hydra.run.dir={Path(tempfile.gettempdir()) / 'llada-test-scratch'}"
CONF_DIR = str(REPO / "conf")

# Overrides that make a full run take seconds: a 1-layer model, a small vocabulary, short blocks.
TINY_RUN = [
    "model.dim=32",
    "model.n_layers=1",
    "model.n_heads=2",
    "data.vocab_size=512",
    "data.block_size=32",
    "data.batch_size=8",
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "sampler.steps=8",
    "sampler.n_tokens=8",
    "callbacks.samples.num_samples=1",
    "callbacks.samples.prompts=[]",
    "optim.scheduler.warmup_steps=2",
]


@contextmanager
def hydra_context() -> Iterator[None]:
    """Hydra initialized on the repository's conf/, for code that needs Hydra's global state."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield


def compose_config(
    name: str = "train", overrides: Sequence[str] = (), *, return_hydra_config: bool = False
) -> DictConfig:
    """The config `name` composed from conf/ with `overrides`, as the CLI composes it (no run)."""
    with hydra_context():
        return compose(name, overrides=list(overrides), return_hydra_config=return_hydra_config)


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tokenizer/data cache for the session, so each corpus is prepared once."""
    cache = tmp_path_factory.mktemp("llada-cache")
    os.environ["LLADA_CACHE_DIR"] = str(cache)
    return cache


def run_cli(
    module: str, *overrides: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <overrides>` in the repo, as a user runs it; raises on failure if `check`."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc
