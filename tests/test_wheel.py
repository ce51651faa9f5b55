"""A regular (non-editable) install runs from any directory: the wheel carries conf/.

Also: users add config groups of their own without forking, through `hydra.searchpath`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY_RUN

WIDE_MODEL = "defaults:\n  - tiny\n  - _self_\ndim: 256\n"  # a user's own model option


def user_conf(root: Path) -> Path:
    """my_conf/model/wide.yaml: the tiny model, wider."""
    (root / "my_conf" / "model").mkdir(parents=True)
    (root / "my_conf" / "model" / "wide.yaml").write_text(WIDE_MODEL)
    return root / "my_conf"


def python(args: list[str], cwd: Path, pythonpath: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_user_config_group_through_the_searchpath(tmp_path: Path) -> None:
    conf = user_conf(tmp_path)
    args = ["-m", "llada.train", f"hydra.searchpath=[file://{conf}]", "model=wide", "--cfg", "job"]
    out = python(args, cwd=tmp_path)
    assert "dim: 256" in out and "n_layers: 4" in out  # wide.yaml over tiny.yaml


def build_inputs(root: Path) -> Path:
    """A copy of what a build reads, so pip writes its build/ and egg-info there, not here."""
    copy = root / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, copy / name)
    for name in ("src", "conf"):
        shutil.copytree(REPO / name, copy / name, ignore=ignore)
    return copy


@pytest.mark.slow
def test_wheel_installs_and_trains_outside_the_checkout(tmp_path: Path) -> None:
    wheels, target, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    pip = ["-m", "pip", "--disable-pip-version-check", "-q"]
    python(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(build_inputs(tmp_path)),
        ],
        work,
    )
    [wheel] = wheels.glob("llada-*.whl")
    python([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], work)
    assert (target / "llada" / "conf" / "train.yaml").is_file()
    assert not (work / "conf").exists()

    where = python(
        ["-c", "import llada.cli as c; print(c.__file__); print(c.CONF_DIR)"], work, str(target)
    )
    assert all(line.startswith(str(target)) for line in where.split())  # the installed copy
    job = python(["-m", "llada.train", "--cfg", "job"], work, str(target))
    assert "objective:" in job and "llada.diffusion.mdm.MaskedDiffusion" in job
    conf = user_conf(work)
    wide = ["-m", "llada.train", f"hydra.searchpath=[file://{conf}]", "model=wide", "--cfg", "job"]
    assert "dim: 256" in python(wide, work, str(target))

    run = [*TINY_RUN, "trainer.max_steps=2", "trainer.val_check_interval=2"]
    out = python(["-m", "llada.train", *run, f"hydra.run.dir={work / 'run'}"], work, str(target))
    assert "validation ELBO perplexity" in out
    assert (work / "run" / "checkpoints" / "last.ckpt").is_file()
