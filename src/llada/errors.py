"""User-facing failures: one clear line on stderr and a non-zero exit, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import InstantiationException

# Lightning's complaints about the trainer settings (e.g. a GPU asked for on a machine without one).
# Matched by name: generation runs without Lightning, and importing it here would cost seconds.
TRAINER_HINT = " (check trainer.accelerator / trainer.devices; trainer=cpu runs anywhere)"
TRAINER_ERROR = "MisconfigurationException"
USER_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    ValueError,
    OSError,
    TypeError,
    KeyError,
    FloatingPointError,
)


def is_user_error(error: BaseException) -> bool:
    """An error of the input (a bad value, a missing file, a trainer setting), not a bug."""
    return isinstance(error, USER_ERRORS) or is_trainer_error(error)


def is_trainer_error(error: BaseException) -> bool:
    return any(cls.__name__ == TRAINER_ERROR for cls in type(error).__mro__)


@contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn expected input errors into `error: <message>` and exit code 2 (LLADA_TRACEBACK=1 shows all)."""
    try:
        yield
    except Exception as error:
        if os.environ.get("LLADA_TRACEBACK"):
            raise
        # Hydra wraps a constructor's error (e.g. a schedule's range check): report the cause.
        cause = error.__cause__ if isinstance(error, InstantiationException) else error
        if cause is None or not is_user_error(cause):
            raise
        text = str(cause).strip()
        message = text.splitlines()[0] if text else type(cause).__name__
        if is_trainer_error(cause):
            message += TRAINER_HINT
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
