"""``trainer.train()`` with tunesmith's reliability guards around it.

* atomic checkpoints (``checkpoints.py``);
* exact resume from a checkpoint: transformers restores weights, optimizer, scheduler, RNG states,
  step counters and the data position; tunesmith adds the loss bookkeeping between logs and a
  seeded length-grouped sampler (``resume.py``). Checkpoints are taken only at optimizer-step
  boundaries, so no partly accumulated gradient is ever lost or replayed;
* NaN / inf loss or gradients (``nan_guard.py``);
* SIGTERM / SIGINT: save, say where, exit 143 / 130 (``signals.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional


def train_with_guards(trainer: Any, cfg: Any, checkpoint: Optional[Path] = None) -> Any:
    """Train ``trainer`` (resuming from ``checkpoint`` when given) and return its ``TrainOutput``.

    Raises:
        Interrupted: SIGTERM / SIGINT arrived; a checkpoint was saved (exit code 143 / 130).
        TrainingError: a NaN/inf stopped training, or a checkpoint could not be written.
    """
    from tunesmith.training.checkpoints import install_atomic_checkpoints, read_marker
    from tunesmith.training.nan_guard import install_nan_guard
    from tunesmith.training.resume import RestoreLossBookkeeping, SeedLengthGroupedSampler, fingerprint
    from tunesmith.training.signals import raise_if_stopped, stop_on_signals, train_until_stopped

    install_atomic_checkpoints(trainer, fingerprint(cfg))
    guard = install_nan_guard(trainer, cfg.train.nan_policy)
    handler = trainer.callback_handler
    handler.callbacks.remove(guard)
    handler.callbacks.insert(0, guard)  # first, so its log entries reach metrics.jsonl and the dashboards
    trainer.add_callback(SeedLengthGroupedSampler(trainer))
    if checkpoint is not None:
        record = read_marker(checkpoint) or {}
        handler.callbacks.insert(0, RestoreLossBookkeeping(trainer, record.get("state", {})))
        print(f"Resuming from {checkpoint} (step {record.get('step', '?')})", flush=True)
    _no_steps_past_the_end(trainer)
    with stop_on_signals(trainer) as stop:
        output = train_until_stopped(trainer,
                                     resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    raise_if_stopped(stop, trainer)
    return output


def _no_steps_past_the_end(trainer: Any) -> None:
    """A run resumed from its final checkpoint (killed after the last step, before its record was
    written) trains no further: transformers would run the rest of that epoch's steps otherwise."""
    run_epoch = trainer._run_epoch

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if trainer.state.max_steps > 0 and trainer.state.global_step >= trainer.state.max_steps:
            trainer.control.should_training_stop = True
            return None
        return run_epoch(*args, **kwargs)

    trainer._run_epoch = guarded


def nan_skipped_steps(trainer: Any) -> int:
    """Optimizer steps skipped for a NaN/inf under ``train.nan_policy=skip`` (resumed runs included)."""
    return int(getattr(trainer, "tunesmith_nan_skipped", 0))
