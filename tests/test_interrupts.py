"""SIGKILL in the middle of dataset preparation and of checkpoint writing, at random points.

A killed process cleans nothing up, so whatever it leaves must either be complete or be a temp
entry no loader takes for a result; the next run must then succeed, give the same data, and clear
the temp entries of the killed writer.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from conftest import REPO, TINY_RUN, compose_config
from llada.atomic import (
    HOST,
    STALE_CANDIDATE,
    TEMP_SUFFIX,
    atomic_directory,
    atomic_write,
    umask,
)
from llada.checkpoint_io import AtomicCheckpointIO
from llada.data.corpus import pydoc_topics, text_files
from llada.data.datamodule import SPLITS, TextDataModule
from llada.module import DiffusionLM
from llada.train import resolve_ckpt_path, train

KILLS = 3  # kill points per kind of write
DATA_ARGS = {"vocab_size": 2048, "block_size": 128}

PREPARE_DATA = """
import json, sys
from functools import partial
from llada.data.corpus import text_files
from llada.data.datamodule import TextDataModule
corpus, cache, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
module = TextDataModule(partial(text_files), path=corpus, cache_dir=cache, **args)
print("ready", flush=True)
module.setup()
"""

# Lightning's pattern with save_top_k=1: last.ckpt, the new best, then the old best removed.
WRITE_CHECKPOINTS = """
import itertools, sys
from pathlib import Path
import torch
from llada.checkpoint_io import AtomicCheckpointIO
checkpoint = torch.load(sys.argv[1], weights_only=True, map_location="cpu")
folder, io = Path(sys.argv[2]), AtomicCheckpointIO()
print("ready", flush=True)
for step in itertools.count(1):
    checkpoint["global_step"] = step
    io.save_checkpoint(checkpoint, folder / "last.ckpt")
    io.save_checkpoint(checkpoint, folder / f"best-step{step}.ckpt")
    io.remove_checkpoint(folder / f"best-step{step - 1}.ckpt")
"""


def kill_delays(seed: int, span: float) -> list[float]:
    """One seeded random delay in each of KILLS equal slices of [0, span): early to late kills."""
    rng = random.Random(seed)
    return [span * (index + rng.random()) / KILLS for index in range(KILLS)]


def run_and_kill(code: str, runs: list[tuple[list[str], float]], logs: Path) -> list[int]:
    """Start `python -c code args` for each (args, delay) at once; SIGKILL each `delay` s after
    all of them printed 'ready'. Returns their exit statuses.

    Waiting for 'ready' keeps interpreter start-up out of the delays, so the kills land in the
    work itself, and starting the processes together pays that start-up once. They are reaped, so
    their pids no longer run: what they left behind is stale.
    """
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        procs = [
            stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", code, *args], cwd=REPO, stdout=subprocess.PIPE, text=True,
                    stderr=stack.enter_context((logs / f"{index}.log").open("w")),
                )
            )
            for index, (args, _) in enumerate(runs)
        ]  # fmt: skip
        for index, proc in enumerate(procs):
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", (
                logs / f"{index}.log"
            ).read_text()[-2000:]
        start = time.monotonic()
        for proc, (_, delay) in sorted(zip(procs, runs, strict=True), key=lambda run: run[1][1]):
            time.sleep(max(0.0, start + delay - time.monotonic()))
            proc.send_signal(signal.SIGKILL)
        return [proc.wait(timeout=60) for proc in procs]


def temp_entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX))


def assert_temps_are_unmistakable(folder: Path) -> None:
    """Leftovers are hidden, end in .tmp and name their (dead) writer: never read as results."""
    for entry in temp_entries(folder):
        assert entry.name.startswith(".") and STALE_CANDIDATE.fullmatch(entry.name), entry.name


# ------------------------------------------------------------------------------- dataset caches
@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pydoc's text four times over (~1.4 MB): preparing it takes over a second here."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    documents = pydoc_topics()
    path.write_text("\n\n".join(f"{doc} (copy {n})" for n in range(4) for doc in documents))
    return path


def prepare(corpus: Path, cache: Path) -> TextDataModule:
    module = TextDataModule(
        partial(text_files), path=str(corpus), cache_dir=str(cache), **DATA_ARGS
    )
    module.setup()
    return module


def prepared_data(module: TextDataModule) -> dict[str, object]:
    """What a run gets from preparation: the tokenizer and every block of both splits."""
    assert module.tokenizer is not None and module.train_dataset is not None
    splits = {"train": module.train_dataset, "validation": module.val_dataset}
    return {
        "tokenizer": module.tokenizer.get_vocab(),
        **{split: np.asarray(data.with_format("numpy")["input_ids"]) for split, data in splits.items()},
    }  # fmt: skip


def assert_same(data: dict[str, object], reference: dict[str, object]) -> None:
    assert data["tokenizer"] == reference["tokenizer"]
    for split in SPLITS:
        np.testing.assert_array_equal(data[split], reference[split])


@pytest.mark.slow
def test_killed_data_preparation_leaves_no_partial_cache(corpus: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    reference = prepared_data(prepare(corpus, tmp_path / "reference"))
    # Three preparations share two cores: each runs about 1.5x slower than this one did alone.
    span = 1.5 * (time.perf_counter() - start)
    caches = [tmp_path / f"cache{index}" for index in range(KILLS)]
    runs = [
        ([str(corpus), str(cache), json.dumps(DATA_ARGS)], delay)
        for cache, delay in zip(caches, kill_delays(seed=1, span=span), strict=True)
    ]
    run_and_kill(PREPARE_DATA, runs, tmp_path / "logs")
    for cache in caches:
        if cache.is_dir():
            assert_temps_are_unmistakable(cache)
            # Anything under a final name is whole: the tokenizer as trained, both splits complete.
            for path in cache.glob("tokenizer-*.json"):
                assert Tokenizer.from_file(str(path)).get_vocab() == reference["tokenizer"]
            for folder in cache.glob("data-*"):
                for split in SPLITS:
                    blocks = datasets.load_from_disk(str(folder / split)).with_format("numpy")
                    np.testing.assert_array_equal(blocks["input_ids"], reference[split])
        assert_same(prepared_data(prepare(corpus, cache)), reference)
        assert temp_entries(cache) == []  # the next preparation cleared what the kill left


# ---------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real llada checkpoint from a two-step run, of the default model size (27 MB): writing
    it takes most of the writer's time, so most kills land mid-write."""
    run_dir = tmp_path_factory.mktemp("run")
    overrides = [*TINY_RUN, "model.dim=192", "model.n_layers=4", "model.n_heads=4"]
    cfg = compose_config("train", overrides=[*overrides, f"run_dir={run_dir}"])
    train(cfg)
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_killed_checkpoint_writes_leave_loadable_checkpoints(
    checkpoint: Path, tmp_path: Path
) -> None:
    run_dirs = [tmp_path / f"run{index}" for index in range(KILLS)]
    runs = [
        ([str(checkpoint), str(run_dir / "checkpoints")], delay)
        for run_dir, delay in zip(run_dirs, kill_delays(seed=2, span=1.0), strict=True)
    ]
    assert run_and_kill(WRITE_CHECKPOINTS, runs, tmp_path / "logs") == [-signal.SIGKILL] * KILLS
    for run_dir in run_dirs:
        folder = run_dir / "checkpoints"
        assert_temps_are_unmistakable(folder)
        saved = sorted(folder.glob("*.ckpt"))
        assert [p.name for p in saved][-1:] == ["last.ckpt"]
        for path in saved:  # every checkpoint a loader, a glob or `ckpt_path=last` finds is whole
            assert DiffusionLM.load_from_checkpoint(path).tokenizer.mask_token_id is not None

        # The next run resumes from last.ckpt; its first save clears what the killed one left.
        state = torch.load(resolve_ckpt_path("last", run_dir), weights_only=True)
        AtomicCheckpointIO().save_checkpoint(state, folder / "last.ckpt")
        assert temp_entries(folder) == []
        assert torch.load(folder / "last.ckpt", weights_only=True).keys() == state.keys()


# ---------------------------------------------------------------------------- what kills leave
def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    code = "import os; print(os.getpid())"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout)


def test_next_write_removes_only_temps_of_dead_writers_on_this_host(tmp_path: Path) -> None:
    dead = dead_pid()
    stale_file = tmp_path / f".last.ckpt.{HOST}-{dead}.abc123.tmp"
    stale_dir = tmp_path / f".data-0123.{HOST}-{dead}.def456.tmp"
    live = tmp_path / f".best-step4.ckpt.{HOST}-{os.getpid()}.ghi789.tmp"  # a writer still at work
    elsewhere = tmp_path / f".last.ckpt.other-node-{dead}.jkl012.tmp"  # shared disk, other host
    for path in (stale_file, live, elsewhere):
        path.write_bytes(b"half a checkpoint")
    (stale_dir / "train").mkdir(parents=True)

    with atomic_write(tmp_path / "samples.jsonl", "w") as handle:
        handle.write("{}\n")
    assert temp_entries(tmp_path) == sorted([live, elsewhere])


def test_atomic_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """mkstemp/mkdtemp make owner-only entries; a checkpoint or a shared cache must be as
    readable as open() and mkdir() would have made it."""
    with atomic_write(tmp_path / "last.ckpt") as handle:
        handle.write(b"data")
    with atomic_directory(tmp_path / "data-0123") as folder:
        (folder / "train").mkdir()
    assert (tmp_path / "last.ckpt").stat().st_mode & 0o777 == 0o666 & ~umask()
    assert (tmp_path / "data-0123").stat().st_mode & 0o777 == 0o777 & ~umask()
