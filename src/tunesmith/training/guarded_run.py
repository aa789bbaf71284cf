"""``trainer.train()`` with tunesmith's reliability guards around it.

* atomic checkpoints (``checkpoints.py``);
* exact resume from a checkpoint: transformers restores weights, optimizer, scheduler, RNG states,
  step counters and the data position; tunesmith adds the loss bookkeeping between logs and a
  seeded length-grouped sampler (``resume.py``). Checkpoints are taken only at optimizer-step
  boundaries, so no partly accumulated gradient is ever lost or replayed;
* NaN / inf loss or gradients (``nan_guard.py``);
* SIGTERM / SIGINT: save, say where, exit 143 / 130 (``signals.py``);
* out of memory at once: the longest batch runs before the first step (``memory_probe.py``).

The checkpoint, resume and NaN behaviour are methods of the trainer (``guarded_trainer.py``),
switched on here by ``guard``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

logger = logging.getLogger(__name__)


def train_with_guards(trainer: Any, cfg: Any, checkpoint: Optional[Path] = None, memory_probe: Any = None) -> Any:
    """Train ``trainer`` (resuming from ``checkpoint`` when given) and return its ``TrainOutput``.
    ``memory_probe`` (``memory_probe.MemoryProbe``): the longest batch runs before the first step, and
    running out of memory names the batch and the settings to change.

    Raises:
        Interrupted: SIGTERM / SIGINT arrived; a checkpoint was saved (exit code 143 / 130).
        TrainingError: a NaN/inf stopped training, a checkpoint could not be written, or a step ran
            out of memory.
    """
    from tunesmith.training.callbacks import close_progress_bars
    from tunesmith.training.checkpoints import read_marker
    from tunesmith.training.guarded_trainer import guard
    from tunesmith.training.nan_guard import install_nan_guard
    from tunesmith.training.resume import RestoreLossBookkeeping, SeedLengthGroupedSampler, fingerprint
    from tunesmith.training.signals import raise_if_stopped, stop_on_signals, train_until_stopped

    trainer = guard(trainer, fingerprint(cfg), install_nan_guard(trainer, cfg.train.nan_policy), memory_probe)
    trainer.add_callback(SeedLengthGroupedSampler(trainer))
    if checkpoint is not None:
        record = read_marker(checkpoint) or {}
        trainer.callback_handler.callbacks.insert(0, RestoreLossBookkeeping(trainer, record.get("state", {})))
        logger.info(f"Resuming from {checkpoint} (step {record.get('step', '?')})")
        _resume_stream(trainer, checkpoint)
    try:
        with stop_on_signals(trainer) as stop:
            output = train_until_stopped(trainer,
                                         resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    finally:
        close_progress_bars(trainer)  # a step that raised leaves no bar behind
    raise_if_stopped(stop, trainer)
    return output


def _resume_stream(trainer: Any, checkpoint: Path) -> None:
    """A streaming run (``data.streaming``) starts its stream at the position saved with the checkpoint,
    so no row is read twice or skipped; without a saved position the trained batches are read and skipped."""
    import json

    from tunesmith.training.checkpoints import STREAM_POSITION

    stream = trainer.train_dataset
    saved = checkpoint / STREAM_POSITION
    if not hasattr(stream, "resume_from"):
        return
    if not saved.is_file():
        logger.warning(f"{checkpoint} holds no stream position: the rows trained so far are read again and skipped")
        return
    state = json.loads(saved.read_text(encoding="utf-8"))
    stream.resume_from(state)
    logger.info(f"Stream: continuing after row {state['rows_out']} of pass {state['passes'] + 1} "
                f"({state['rows_read']} rows read)")


def nan_skipped_steps(trainer: Any) -> int:
    """Optimizer steps skipped for a NaN/inf under ``train.nan_policy=skip`` (resumed runs included)."""
    return int(getattr(trainer, "nan_skipped_steps", 0))
