"""Whether ``output_dir`` can hold a run, checked before anything is loaded or written.

A path that is an existing file, lies under a file, or cannot be created is a ``RunDirError``
naming ``output_dir``, the path and the reason, instead of a raw ``NotADirectoryError`` from deep
inside the run.

Example:
    >>> check_output_dir("runs/a/train.jsonl/x")
    RunDirError: output_dir: 'runs/a/train.jsonl/x' lies under 'runs/a/train.jsonl', which is a file, not a folder; ...
"""

from __future__ import annotations

import os
from pathlib import Path

from tunesmith.errors import RunDirError

_CHOOSE = "choose another output_dir"


def check_output_dir(value: str | os.PathLike) -> Path:
    """``value`` as a path, after checking that a run folder can exist there; raises ``RunDirError``.

    Nothing is created: the nearest existing folder above the path must be a folder this process
    may write into (or the path an existing folder).
    """
    path = Path(value).expanduser()
    shown = str(value)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"output_dir: {shown!r} is a file, not a folder; {_CHOOSE}")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise RunDirError(f"output_dir: {shown!r} is not writable by this user; {_CHOOSE}")
        return path
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise RunDirError(f"output_dir: {shown!r} lies under {str(parent)!r}, which is a file, not a folder; "
                          f"{_CHOOSE}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunDirError(f"output_dir: {shown!r} cannot be created: {str(parent)!r} is not writable by this "
                          f"user; {_CHOOSE}")
    return path


def make_output_dir(path: Path) -> None:
    """Create the run folder (and its parents); an ``OSError`` becomes a ``RunDirError`` naming output_dir."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"output_dir: {str(path)!r} cannot be created: {err.strerror or err}; {_CHOOSE}") from None
