"""Where tunesmith keeps its caches (converted GGUF models, tokenized datasets)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def cache_root() -> Path:
    """``$TUNESMITH_CACHE``, else ``$XDG_CACHE_HOME/tunesmith``, else ``~/.cache/tunesmith``."""
    if os.environ.get("TUNESMITH_CACHE"):
        return Path(os.environ["TUNESMITH_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "tunesmith"


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target`` in one rename.

    An interrupted write leaves only a ``.tmp-*`` folder behind, never a half-written ``target``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
