"""User-facing failures: one clear line on stderr and a non-zero exit, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException

# Lightning's complaints about the trainer settings (e.g. a GPU asked for on a machine without one).
TRAINER_HINT = " (check trainer.accelerator / trainer.devices; trainer=cpu runs anywhere)"
USER_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    ValueError,
    OSError,
    TypeError,
    KeyError,
    FloatingPointError,
    MisconfigurationException,
)


@contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn expected input errors into `error: <message>` and exit code 2 (LLADA_TRACEBACK=1 shows all)."""
    try:
        yield
    except (*USER_ERRORS, InstantiationException) as error:
        if os.environ.get("LLADA_TRACEBACK"):
            raise
        # Hydra wraps a constructor's error (e.g. a schedule's range check): report the cause.
        cause = error.__cause__ if isinstance(error, InstantiationException) else error
        if isinstance(error, InstantiationException) and not isinstance(cause, USER_ERRORS):
            raise
        text = str(cause).strip()
        message = text.splitlines()[0] if text else type(cause).__name__
        if isinstance(cause, MisconfigurationException):
            message += TRAINER_HINT
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
