"""No lost work and no code execution from files: atomic checkpoints, safe loading."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from llada.checkpoint_io import AtomicCheckpointIO
from llada.module import DiffusionLM


class Exploit:
    """A pickle payload that would create a file when unpickled by an unsafe loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_checkpoint_is_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    with path.open("wb") as handle:
        pickle.dump({"state_dict": {}, "llada": Exploit(marker)}, handle)
    with pytest.raises(ValueError, match="cannot load checkpoint"):
        DiffusionLM.load_from_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"\x80\x04garbage"])
def test_truncated_or_foreign_files_fail_with_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"cannot load checkpoint .*bad\.ckpt") as info:
        DiffusionLM.load_from_checkpoint(path)
    assert "\n" not in str(info.value)


def test_checkpoint_without_llada_section_is_named(tmp_path: Path) -> None:
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(ValueError, match="not a llada checkpoint"):
        DiffusionLM.load_from_checkpoint(path)


def test_atomic_save_keeps_previous_checkpoint_when_a_write_fails(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": torch.tensor(1)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full halfway")

    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint({"step": torch.tensor(2), "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["step"].item() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temp file left
