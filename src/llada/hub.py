"""Loading from the Hugging Face hub or a local directory, offline first.

One neutral place (it imports no llada module) for the backbones, the data modules and the judge:
hub names resolve from a local directory or the HF cache before the network, and fail fast with
one clear line when the hub is unreachable.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from transformers import AutoTokenizer, PreTrainedTokenizerBase


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers (never under HF_HUB_OFFLINE): a quick TCP check, no request."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", 443), timeout):
            return True
    except OSError:
        return False


def resolve_pretrained(loader: Any, name_or_path: str, **kwargs: Any) -> Any:
    """`loader.from_pretrained` that tries the local directory / HF cache before the network."""
    if Path(name_or_path).expanduser().is_dir():
        return loader.from_pretrained(str(Path(name_or_path).expanduser()), **kwargs)
    try:
        return loader.from_pretrained(name_or_path, local_files_only=True, **kwargs)
    except OSError:
        if not hub_reachable():
            raise OSError(
                f"cannot load '{name_or_path}': it is not a local directory, not in the HF cache, "
                "and the Hugging Face hub is unreachable (offline); pass a local directory written "
                "by save_pretrained()"
            ) from None
    return loader.from_pretrained(name_or_path, **kwargs)


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    return resolve_pretrained(AutoTokenizer, name_or_path, trust_remote_code=trust_remote_code)
