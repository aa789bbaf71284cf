"""Damaged checkpoints: found by checksum, reported, and moved aside rather than resumed from.

Each checkpoint's marker (``tunesmith_checkpoint.json``) records a CRC-32 of every file next to
its size. A file whose size is right but whose bytes changed (a bad disk, a partial copy, an
edit) no longer matches: with ``train.resume=auto`` such a checkpoint, like an incomplete one, is
reported and renamed to ``checkpoints/.damaged-checkpoint-N``, and the run resumes from the newest
sound checkpoint before it. A checkpoint named explicitly (``train.resume=PATH``) is refused with
the reason instead. (CRC-32 runs at about 2 GB/s, so checking costs about a second per 2 GB.)

Example:
    ``damage(Path("runs/x/checkpoints/checkpoint-7"))`` -> ``'adapter_model.safetensors: its bytes changed since it was written (CRC-32 differs)'``
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path
from typing import Callable, Optional

from tunesmith.training.checkpoints import Checkpoint, MARKER, incomplete_reason, read_marker, step_of

DAMAGED = ".damaged-"  # prefix of a checkpoint folder moved aside; never resumed from nor rotated
CHUNK = 8 * 2**20  # bytes read at a time while checksumming
logger = logging.getLogger(__name__)


def crc32_of(path: Path) -> int:
    """The CRC-32 of a file's bytes, read in 8 MiB chunks."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def file_checksums(folder: Path) -> dict[str, int]:
    """``{relative path: CRC-32}`` of every file under ``folder`` except the marker."""
    folder = Path(folder)
    return {str(f.relative_to(folder)): crc32_of(f) for f in sorted(folder.rglob("*"))
            if f.is_file() and f.name != MARKER}


def damage(path: Path) -> Optional[str]:
    """Why a checkpoint folder cannot be resumed from (incomplete, or a file's bytes changed); None when sound.

    Checkpoints written before checksums were recorded are judged by their sizes alone.
    """
    reason = incomplete_reason(path)
    if reason:
        return reason
    sums = (read_marker(path) or {}).get("crc32") or {}
    for name, expected in sums.items():
        if crc32_of(Path(path) / name) != expected:
            return f"{name}: its bytes changed since it was written (CRC-32 differs)"
    return None


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint to ``.damaged-checkpoint-N`` (``-2``, ``-3``... when taken) in its folder."""
    path = Path(path)
    target = path.with_name(f"{DAMAGED}{path.name}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{DAMAGED}{path.name}-{n}")
    os.rename(path, target)
    return target


def newest_sound_checkpoint(folder: Path, move_aside: bool = True,
                            report: Optional[Callable[[str], None]] = None) -> Optional[Checkpoint]:
    """The newest checkpoint in ``folder`` that is complete and whose files match their checksums.

    Every newer checkpoint that is not is reported (``report``, default a logged warning) and,
    with ``move_aside``, renamed out of the way (``set_aside``), so that it is never picked again.
    """
    report = report or logger.warning
    folder = Path(folder)
    if not folder.is_dir():
        return None
    candidates = sorted((p for p in folder.iterdir() if step_of(p) is not None), key=lambda p: -(step_of(p) or 0))
    for path in candidates:
        reason = damage(path)
        if reason is None:
            return Checkpoint(path, step_of(path) or 0, read_marker(path) or {})
        where = f"; moved aside to {set_aside(path)}" if move_aside else ""
        report(f"train.resume: {path} is damaged ({reason}){where}; it is not resumed from")
    return None
