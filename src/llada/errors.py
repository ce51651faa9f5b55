"""User-facing failures: one clear line on stderr and a non-zero exit, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

USER_ERRORS = (FileNotFoundError, ValueError, OSError, TypeError, KeyError)


@contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn expected input errors into `error: <message>` and exit code 2 (LLADA_TRACEBACK=1 shows all)."""
    try:
        yield
    except USER_ERRORS as error:
        if os.environ.get("LLADA_TRACEBACK"):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
