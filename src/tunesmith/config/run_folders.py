"""Run folders checked before they are used: ``output_dir`` must be creatable, and a run folder a
command reads (``generate``, ``eval``, ``report``, ``merge``) must exist.

A path that is an existing file, lies under a file, or cannot be created is a ``RunDirError``
naming ``output_dir``, the path and the reason, instead of a raw ``NotADirectoryError`` from deep
inside the run; a mistyped run path "does not exist" rather than "is not a run directory".

Example:
    ``check_output_dir("runs/a/train.jsonl/x")`` -> ``RunDirError: output_dir: 'runs/a/train.jsonl/x' lies under 'runs/a/train.jsonl', which is a file, not a folder; ...``
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


def existing_folder(value: str | os.PathLike) -> Path:
    """``value`` as a path when it is an existing folder; else a ``RunDirError`` saying it does not
    exist (or is a file), before any check of what the folder holds.

    Example:
        ``existing_folder("runz/arith")`` -> ``RunDirError: runz/arith: does not exist; give a run directory (such as runs/NAME, ...) or a model folder``
    """
    path = Path(value)
    if not path.exists():
        raise RunDirError(f"{path}: does not exist; give a run directory (such as runs/NAME, printed at the end of "
                          "`tunesmith train`) or a model folder")
    if not path.is_dir():
        raise RunDirError(f"{path}: is a file; give a run directory (such as runs/NAME) or a model folder")
    return path
