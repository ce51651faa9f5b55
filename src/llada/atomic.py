"""Files and folders written atomically: into a temp entry in the target folder, then renamed.

Rename is atomic on POSIX filesystems, so readers (and a resumed run) see the old file or the new
one, never half of one; an error mid-write leaves the old file and no temp entry behind.

A process killed mid-write (SIGKILL, out of memory, a preempted node) cleans up nothing. Its temp
entry is hidden, ends in `.tmp` (so no loader, cache lookup or `*.ckpt` glob takes it for a
result) and names the host and pid of its writer: the next atomic write into that folder deletes
the ones whose writer no longer runs, so repeated kills do not pile up checkpoint-sized garbage.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"
HOST = socket.gethostname()
# `.<target name>.<host>-<pid>.<random>.tmp`, as made by tempfile with `temp_prefix`.
STALE_CANDIDATE = re.compile(
    rf"\..+\.{re.escape(HOST)}-(?P<pid>\d+)\.[^.]+{re.escape(TEMP_SUFFIX)}"
)


def temp_prefix(target: Path) -> str:
    """Hidden, the target's name, then the writer: `.last.ckpt.<host>-<pid>.`."""
    return f".{target.name}.{HOST}-{os.getpid()}."


@functools.cache
def umask() -> int:
    """The process umask (read once: os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_running(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temp entries in `folder` that writers on this host left when killed.

    Entries of live writers and of other hosts (a shared filesystem) are kept. Returns the removed.
    """
    if os.name != "posix" or not folder.is_dir():  # os.kill(pid, 0) probes only on POSIX
        return []
    stale = [
        entry
        for entry in folder.iterdir()
        if (match := STALE_CANDIDATE.fullmatch(entry.name)) and not is_running(int(match["pid"]))
    ]
    for entry in stale:
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return stale


def _prepare(path: str | os.PathLike[str]) -> Path:
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent)
    return target


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """`with atomic_write(p, "w") as f: f.write(...)`; the parent folder is created if needed."""
    target = _prepare(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target), suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it owner-only; open() would not
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """`with atomic_directory(p) as tmp: <write files under tmp>`: p appears whole or not at all.

    If another process renamed its own `p` into place first (two runs filling the same cache
    entry), that one is kept and this one discarded.
    """
    target = _prepare(path)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=temp_prefix(target), suffix=TEMP_SUFFIX))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it owner-only; mkdir would not
        try:
            os.replace(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
