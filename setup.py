"""Build hook: ship the repository's `conf/` inside the package as `llada/conf`.

`conf/` at the repository root stays the one source of truth; a wheel (and so a plain
`pip install .` or `pip install git+URL`) carries a copy, which `llada.cli.config_dir` finds.
Editable installs read the repository's `conf/` directly. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildPyWithConfigs(build_py):
    """build_py, then conf/ -> <build_lib>/llada/conf."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if not (CONF / "train.yaml").is_file():
            raise FileNotFoundError(f"{CONF} is missing: build llada from a checkout or an sdist")
        target = Path(self.build_lib) / "llada" / "conf"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(CONF, target, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildPyWithConfigs})
