"""Atomic checkpoints: a checkpoint folder is either complete or absent, whatever kills the process.

The Trainer writes ``checkpoints/checkpoint-N`` itself (weights or adapter, optimizer, scheduler,
RNG states, ``trainer_state.json``). ``atomic_save`` has it write into
``checkpoints/.staging/checkpoint-N``; only when every file is written does tunesmith add
``tunesmith_checkpoint.json`` (every file with its size, the config fingerprint and the loss
bookkeeping), ``fsync`` the files and folders, and rename the folder into place. Older
checkpoints (``train.save_limit``) are deleted only after that, each renamed away before it is
removed. A folder without a valid marker, or whose files do not match it, is incomplete and never
resumed from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

from tunesmith.config.run_dir import RunDir
from tunesmith.errors import TrainingError

logger = logging.getLogger(__name__)

PREFIX = "checkpoint-"
MARKER = "tunesmith_checkpoint.json"  # written last, inside the staging folder: the folder is complete
# A streaming run's position in its stream after the checkpoint's step (``data.streaming``); written
# before the marker, so the marker's checksums cover it.
STREAM_POSITION = "stream_position.json"
STAGING = ".staging"  # under the checkpoints folder; never resumed from
DELETING = ".deleting-"  # a checkpoint being removed is renamed to this prefix first
FORMAT_VERSION = 1
_STEP = re.compile(rf"^{PREFIX}(\d+)$")


@dataclass
class Checkpoint:
    """A complete checkpoint folder, its optimizer step and its marker record."""

    path: Path
    step: int
    record: dict[str, Any] = field(default_factory=dict)


def step_of(path: Path) -> Optional[int]:
    """``checkpoint-12`` -> 12; any other name -> None."""
    found = _STEP.match(Path(path).name)
    return int(found.group(1)) if found else None


def read_marker(path: Path) -> Optional[dict[str, Any]]:
    """The marker record of a checkpoint folder, or None when it is missing or unreadable."""
    try:
        record = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("files"), dict) else None


def incomplete_reason(path: Path) -> Optional[str]:
    """Why a folder is not a complete checkpoint (``"no tunesmith_checkpoint.json"``), or None when it is."""
    path = Path(path)
    if not path.is_dir():
        return "not a folder"
    record = read_marker(path)
    if record is None:
        return f"no valid {MARKER} (the write did not finish)"
    for name, size in record["files"].items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, {size} were written"
    return None


def complete_checkpoints(folder: Path) -> list[Checkpoint]:
    """The complete checkpoints in a ``checkpoints`` folder, oldest step first; [] when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        step = step_of(path)
        if step is not None and incomplete_reason(path) is None:
            found.append(Checkpoint(path, step, read_marker(path) or {}))
    return sorted(found, key=lambda c: c.step)


def newest_checkpoint(folder: Path) -> Optional[Checkpoint]:
    """The complete checkpoint with the highest step, or None."""
    found = complete_checkpoints(folder)
    return found[-1] if found else None


def fsync_tree(path: Path) -> None:
    """Flush every file under ``path`` and the folders themselves to the disk."""
    for root, _, names in os.walk(path):
        for name in names:
            _fsync(Path(root, name), os.O_RDONLY)
        _fsync(Path(root), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _fsync(path: Path, flags: int) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:
        return  # a folder cannot be opened for fsync on some platforms; files always can
    try:
        os.fsync(fd)
    except OSError:
        pass  # e.g. fsync on a folder is not supported by this filesystem
    finally:
        os.close(fd)


def remove_checkpoint(path: Path) -> None:
    """Rename the folder away (one atomic step: it is no longer a checkpoint), then delete it."""
    path = Path(path)
    if not path.exists():
        return
    doomed = path.with_name(f"{DELETING}{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def rotate(folder: Path, limit: Optional[int], keep: Optional[str] = None) -> list[Path]:
    """Delete the oldest complete checkpoints beyond ``limit`` (never the newest, nor ``keep``, the
    best one), and leftovers of interrupted deletions. Returns the removed paths."""
    folder = Path(folder)
    for leftover in folder.glob(f"{DELETING}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    found = complete_checkpoints(folder)
    if not limit or len(found) <= limit:
        return []
    protected = {found[-1].path.resolve()}
    if keep:
        protected.add(Path(keep).resolve())
    removed = []
    excess = len(found) - max(limit, len(protected))
    for checkpoint in found:
        if excess <= 0:
            break
        if checkpoint.path.resolve() not in protected:
            remove_checkpoint(checkpoint.path)
            removed.append(checkpoint.path)
            excess -= 1
    return removed


def folder_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def estimate_checkpoint_bytes(folder: Path, model: Any) -> int:
    """The size of the newest checkpoint, or, before the first one, trainable parameters x 3 in
    fp32 (weights plus AdamW's two moments) plus 1 MiB for the small files."""
    newest = newest_checkpoint(folder)
    if newest is not None:
        return folder_bytes(newest.path)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable * 4 * 3 + 2**20


def check_free_space(folder: Path, needed: int, margin: float = 1.5) -> Optional[str]:
    """A warning when the disk holding ``folder`` has less than ``margin`` x ``needed`` bytes free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if free >= needed * margin:
        return None
    return (f"only {free / 2**20:.1f} MiB free on the disk of {folder}; the next checkpoint needs "
            f"about {needed / 2**20:.1f} MiB. If it does not fit, the run stops with the previous checkpoint intact.")


def write_marker(path: Path, step: int, fingerprint: dict[str, Any], state: dict[str, Any]) -> None:
    """Record every file of the finished checkpoint folder with its size and CRC-32; written (and synced) last."""
    from tunesmith.training.checkpoint_integrity import file_checksums

    files = {str(f.relative_to(path)): f.stat().st_size for f in sorted(path.rglob("*")) if f.is_file()
             and f.name != MARKER}
    record = {"format": FORMAT_VERSION, "step": step, "saved": datetime.now().isoformat(timespec="seconds"),
              "files": files, "crc32": file_checksums(path), "fingerprint": fingerprint, "state": state}
    (path / MARKER).write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")


def atomic_save(trainer: Any, root: Path, write: Callable[[Path], None], fingerprint: dict[str, Any]) -> None:
    """Write ``trainer``'s checkpoint of this step atomically (see the module docstring).

    Args:
        trainer: the ``transformers.Trainer`` that is training.
        root: its checkpoints folder.
        write: writes the Trainer's own checkpoint files into ``<staging folder>/checkpoint-N``
            (``tunesmith.training.guarded_trainer``).
        fingerprint: the config keys a resume must match (``resume.fingerprint``), stored in the marker.
    """
    step = trainer.state.global_step
    name = f"{PREFIX}{step}"
    staging_root = root / STAGING
    staged, final = staging_root / name, root / name
    main = trainer.args.should_save
    previous = newest_checkpoint(root) if main else None
    if main:
        warning = check_free_space(root if root.exists() else root.parent,
                                   estimate_checkpoint_bytes(root, trainer.model))
        if warning:
            logger.warning(warning)
        if staged.exists():
            shutil.rmtree(staged)  # left by an earlier process that was killed while writing
        staging_root.mkdir(parents=True, exist_ok=True)
    try:
        write(staging_root)
        trainer.accelerator.wait_for_everyone()  # every process's shards are written
        if main:
            _finish(trainer, staged, final, staging_root, root, step, fingerprint)
    except Exception as err:
        if main:
            shutil.rmtree(staged, ignore_errors=True)
        raise _save_error(err, final, previous) from err
    trainer.accelerator.wait_for_everyone()


def _finish(trainer: Any, staged: Path, final: Path, staging_root: Path, root: Path, step: int,
            fingerprint: dict[str, Any]) -> None:
    """Point the state at the final folder, write the marker, sync, rename into place, rotate."""
    state = trainer.state
    if state.best_model_checkpoint and Path(state.best_model_checkpoint).parent == staging_root:
        state.best_model_checkpoint = str(root / Path(state.best_model_checkpoint).name)
        state.save_to_json(str(staged / "trainer_state.json"))
    (staged / RunDir.TRAINING_ARGS).unlink(missing_ok=True)  # a pickle, never read on resume
    write_marker(staged, step, fingerprint, trainer.loss_bookkeeping())
    fsync_tree(staged)
    if final.exists():
        remove_checkpoint(final)  # e.g. a checkpoint of the same step from a run that was cut short
    os.rename(staged, final)
    _fsync(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        staging_root.rmdir()  # only when empty; another process's staging folder stays
    except OSError:
        pass
    rotate(root, trainer.args.save_total_limit, state.best_model_checkpoint)


def _save_error(err: Exception, final: Path, previous: Optional[Checkpoint]) -> TrainingError:
    try:
        free = f"; {shutil.disk_usage(final.parent).free / 2**20:.1f} MiB free on that disk"
    except OSError:
        free = ""
    kept = (f"The previous checkpoint {previous.path} (step {previous.step}) is intact: fix the cause and run the "
            "same command again to resume from it." if previous else "No earlier checkpoint exists.")
    cause = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return TrainingError(f"could not write checkpoint {final}: {cause}{free}. {kept}")
