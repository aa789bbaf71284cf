"""Where tunesmith keeps its caches (converted GGUF models, tokenized datasets)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$TUNESMITH_CACHE``, else ``$XDG_CACHE_HOME/tunesmith``, else ``~/.cache/tunesmith``."""
    if os.environ.get("TUNESMITH_CACHE"):
        return Path(os.environ["TUNESMITH_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "tunesmith"
