"""logger=wandb offline: the run's transaction log carries what a dashboard needs.

test_training_options checks that the samples table and the animation reach the media folder; this
file reads the `.wandb` transaction log itself (what `wandb sync` uploads): the composed config,
the group and name, every training and validation metric, the table's rows, and that `wandb sync`
accepts the run. A multirun gets one wandb run per job, all in one group.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from PIL import Image

from conftest import REPO, TINY_RUN, compose_config
from llada.train import train

pytestmark = pytest.mark.slow

# The .wandb file is a LevelDB-style log (wandb's datastore): a 7-byte file header, then 32 KiB
# blocks of chunks, each with a 7-byte header (crc32c, length, type); a record spans FIRST,
# MIDDLE.., LAST chunks or is one FULL chunk. Each record is a wandb_internal_pb2.Record.
BLOCK, CHUNK_HEADER, FILE_HEADER = 32 * 1024, 7, 7
FULL, LAST = 1, 4


def wandb_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a .wandb transaction log, as dicts (proto field names)."""
    from google.protobuf.json_format import MessageToDict
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb transaction log"
    records, parts, pos = [], [], FILE_HEADER
    while pos + CHUNK_HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < CHUNK_HEADER:  # block trailer: zero padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if kind == 0:  # zero fill at the end of a block
            pos += room
            continue
        if pos + CHUNK_HEADER + length > len(data):  # still being written
            break
        parts.append(data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length])
        pos += CHUNK_HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            records.append(MessageToDict(record, preserving_proto_field_name=True))
            parts = []
    return records


def finished_records(path: Path, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The log's records once its `exit` record is there: wandb writes the log in its own process,
    so wandb.finish() can return before the last records reach the file."""
    deadline = time.monotonic() + timeout
    while True:
        records = wandb_records(path)
        if any("exit" in record for record in records):
            return records
        assert time.monotonic() < deadline, f"{path} has no exit record after {timeout} s"
        time.sleep(0.2)


def by_type(records: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    return (r[kind] for r in records if kind in r)


def history(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Metric name -> its logged values, in order; media come as {"path": ..., "_type": ...}."""
    values: dict[str, list[Any]] = {}
    for entry in by_type(records, "history"):
        step: dict[str, Any] = {}
        for item in entry["item"]:
            name, *field = item.get("nested_key") or [item["key"]]
            value = json.loads(item["value_json"])
            if field:  # a media reference is stored field by field: [name, "path"], ...
                step.setdefault(name, {})["/".join(field)] = value
            else:
                step[name] = value
        for name, value in step.items():
            values.setdefault(name, []).append(value)
    return values


# Offline and quiet, and none of the user's WANDB_* settings for the project or group.
WANDB_ENV = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
WANDB_UNSET = ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP")


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One TINY_RUN with logger=wandb: its offline run directory, records and config."""
    import wandb

    run_dir = tmp_path_factory.mktemp("wandb-run")
    overrides = [*TINY_RUN, "logger=wandb", "trainer.log_every_n_steps=1", f"run_dir={run_dir}"]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in WANDB_ENV.items():
            patch.setenv(name, value)
        for name in WANDB_UNSET:
            patch.delenv(name, raising=False)
        cfg = compose_config("train", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)  # the run name comes from hydra's job overrides
        with open_dict(cfg):
            del cfg.hydra  # as in a real run: the job's config does not carry hydra's own
        wandb.finish()  # a run another test left open would be reused by WandbLogger
        try:
            train(cfg)
        finally:
            wandb.finish()
        (offline,) = (run_dir / "wandb").glob("offline-run-*")
        (log,) = offline.glob("run-*.wandb")
        yield {"dir": offline, "records": finished_records(log), "cfg": cfg}


def test_run_is_grouped_by_experiment_and_date_and_named_by_overrides(offline_run: dict) -> None:
    (run,) = by_type(offline_run["records"], "run")
    assert run["project"] == "llada"
    assert run["run_group"] == f"default-{date.today():%Y-%m-%d}"
    assert run["job_type"] == "train"
    assert "logger=wandb" in run["display_name"] and "model.dim=32" in run["display_name"]


def test_composed_config_is_logged(offline_run: dict) -> None:
    config: dict[str, Any] = {}
    for update in by_type(offline_run["records"], "config"):
        config.update({item["key"]: json.loads(item["value_json"]) for item in update["update"]})
    cfg = offline_run["cfg"]
    assert config["model"]["dim"] == cfg.model.dim == 32
    assert config["sampler"]["steps"] == 8 and config["remasking"]["name"] == "low_confidence"
    assert config["masking"]["_target_"].endswith("LinearSchedule")
    assert config["seed"] == 0 and config["run_dir"] == str(cfg.run_dir)


def test_training_and_validation_metrics_are_in_the_history(offline_run: dict) -> None:
    metrics = history(offline_run["records"])
    steps = 6  # TINY_RUN's max_steps, logged every step
    assert len(metrics["train/loss"]) == steps
    assert metrics["train/tokens_seen"] == sorted(metrics["train/tokens_seen"])
    assert metrics["train/tokens_seen"][-1] == steps * 8 * 32  # batch 8 x 32 tokens
    assert any(name.startswith("lr-AdamW") for name in metrics)
    buckets = [name for name in metrics if name.startswith("train_loss_by_t/")]
    assert len(buckets) == 10
    assert len(metrics["val/ppl"]) == 2  # validations at steps 3 and 6
    for name in ["train/loss", "val/ppl", "val/elbo", "val/elbo_stderr", *buckets]:
        assert all(math.isfinite(v) for v in metrics[name]), name


def test_samples_table_and_denoising_animation_are_media(offline_run: dict) -> None:
    metrics = history(offline_run["records"])
    (table_ref,) = metrics["samples/table"]
    (video_ref,) = metrics["samples/denoising"]
    table = json.loads((offline_run["dir"] / "files" / table_ref["path"]).read_text())
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert len(rows) == 1  # TINY_RUN: one unconditional sample
    assert rows[0]["text"] and rows[0]["remasking"] == "low_confidence"
    assert rows[0]["steps"] == rows[0]["nfe"] == 8 and rows[0]["sampler"] == "multinomial"
    gif = offline_run["dir"] / "files" / video_ref["path"]
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames > 1


def test_wandb_sync_accepts_the_offline_run(offline_run: dict) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wandb", "sync", "--dry-run", str(offline_run["dir"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Would sync 1 run" in proc.stdout + proc.stderr


def test_multirun_logs_one_run_per_job_in_one_group(tmp_path: Path) -> None:
    env = {**os.environ, **WANDB_ENV, "OMP_NUM_THREADS": "1"}
    for name in WANDB_UNSET:
        env.pop(name, None)
    command = [sys.executable, "-m", "llada.train", "-m", "logger=wandb", "remasking=random,margin"]
    overrides = [*TINY_RUN, "trainer.max_steps=2", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(
        [*command, *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = sorted(tmp_path.glob("*/wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 2
    runs = [next(by_type(finished_records(log), "run")) for log in logs]
    assert len({run["run_group"] for run in runs}) == 1
    names = [run["display_name"] for run in runs]
    assert "remasking=random" in names[0] and "remasking=margin" in names[1]
    for log in logs:  # each run has its own validation and samples
        metrics = history(finished_records(log))
        assert len(metrics["val/ppl"]) == 1 and len(metrics["samples/table"]) == 1
