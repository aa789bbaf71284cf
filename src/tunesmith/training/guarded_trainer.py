"""The Trainer tunesmith trains with: atomic checkpoints, exact resume and the NaN guard, as methods.

``TunesmithTrainer`` is the one ``transformers.Trainer`` subclass the built-in trainers derive
from; ``guard(trainer, ...)`` switches the reliability behaviour on for a run. A trainer a user
registered that is not a ``TunesmithTrainer`` gets the same methods: ``guard`` gives it a class
that puts ``ReliableTrainerMixin`` in front of its own (``guarded_class``).

This is the only module that touches members of ``transformers.Trainer`` that are not public
(``PRIVATE_MEMBERS``): there is no public hook for the checkpoint writer, the folder it writes
into, the loss kept between logs, or the epoch loop. ``tests/training/test_guarded_trainer.py``
checks each of them against the installed transformers, so a release that renames one fails there,
loudly, instead of silently switching a guard off.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Optional

import torch
from transformers import Trainer

logger = logging.getLogger(__name__)

# Trainer methods overridden here, with the parameters the overrides rely on.
PRIVATE_METHODS = {
    "_save_checkpoint": ("model", "trial"),
    "_get_output_dir": ("trial",),
    "_run_epoch": (),
    "_track_num_input_tokens": ("inputs",),
}
# Trainer attributes set by ``_inner_training_loop`` before ``on_train_begin``: the loss accumulated
# since the last log, its running total, the step of the last log, the step training started from.
PRIVATE_ATTRIBUTES = ("_tr_loss", "_total_loss_scalar", "_globalstep_last_logged", "_initial_global_step")
PRIVATE_MEMBERS = (*PRIVATE_METHODS, *PRIVATE_ATTRIBUTES)


def missing_private_members() -> list[str]:
    """What of ``PRIVATE_MEMBERS`` the installed ``transformers.Trainer`` lacks; [] when all are there."""
    problems = []
    for name, params in PRIVATE_METHODS.items():
        method = getattr(Trainer, name, None)
        if not callable(method):
            problems.append(f"Trainer.{name} is gone")
            continue
        have = inspect.signature(method).parameters
        problems += [f"Trainer.{name} no longer takes {p!r}" for p in params if p not in have]
    loop = inspect.getsource(Trainer._inner_training_loop)
    problems += [f"Trainer._inner_training_loop no longer sets self.{a}" for a in PRIVATE_ATTRIBUTES
                 if f"self.{a} =" not in loop]
    return problems


class ReliableTrainerMixin:
    """Atomic checkpoints, resume bookkeeping and the NaN guard for a ``transformers.Trainer``.

    Inert until ``guard`` sets ``checkpoint_fingerprint`` (and ``nan_guard``): a trainer built
    outside a tunesmith run behaves like its base class.
    """

    checkpoint_fingerprint: Optional[dict[str, Any]] = None  # the config keys a resume must match
    nan_guard: Any = None  # a tunesmith.training.nan_guard.NanGuard, or None
    memory_probe: Any = None  # a tunesmith.training.memory_probe.MemoryProbe, or None
    nan_skipped_steps: int = 0  # optimizer steps skipped for a NaN/inf (train.nan_policy=skip)
    staging_dir: Optional[str] = None  # while a checkpoint is written: the folder it goes to first

    # -- checkpoints --------------------------------------------------------------------------
    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """Every checkpoint is written into a staging folder and renamed into place when complete."""
        if self.checkpoint_fingerprint is None:
            return super()._save_checkpoint(model, trial)  # type: ignore[misc]
        from tunesmith.training.checkpoints import atomic_save

        def write(staging: Path) -> None:
            self.staging_dir = str(staging)  # _get_output_dir answers this while the Trainer writes
            try:
                super(ReliableTrainerMixin, self)._save_checkpoint(model, trial)  # type: ignore[misc]
            finally:
                self.staging_dir = None
            self._save_stream_position(staging)

        atomic_save(self, Path(super()._get_output_dir(trial=trial)), write,  # type: ignore[misc]
                    self.checkpoint_fingerprint)

    def _get_output_dir(self, trial: Any) -> str:
        """The staging folder while a checkpoint is being written; the Trainer's own otherwise."""
        return self.staging_dir or super()._get_output_dir(trial=trial)  # type: ignore[misc]

    def _save_stream_position(self, staging: Path) -> None:
        """A streaming run (``data.streaming``): the stream's position after this step, next to the weights."""
        stream = getattr(self, "train_dataset", None)
        if not hasattr(stream, "state_at_step") or not self.args.should_save:  # type: ignore[attr-defined]
            return
        import json

        from tunesmith.training.checkpoints import PREFIX, STREAM_POSITION

        step = self.state.global_step  # type: ignore[attr-defined]
        folder = staging / f"{PREFIX}{step}"
        (folder / STREAM_POSITION).write_text(json.dumps(stream.state_at_step(step)), encoding="utf-8")

    def get_resumed_dataloader(self, dataloader: Any, num_batches: int) -> Any:
        """A stream that starts at the checkpoint's position (``resume_from``) skips nothing; anything else
        skips the batches already trained, as transformers does."""
        if getattr(getattr(self, "train_dataset", None), "resumed", False):
            return dataloader
        return super().get_resumed_dataloader(dataloader, num_batches)  # type: ignore[misc]

    def save_checkpoint_now(self) -> None:
        """Save the current step's checkpoint (atomic), as at a step end; used when a stop cuts an evaluation."""
        self._save_checkpoint(self.model, None)  # type: ignore[attr-defined]

    # -- the loss between logs, for an exact resume --------------------------------------------
    def loss_bookkeeping(self) -> dict[str, Any]:
        """What the Trainer keeps between logs, so a resumed run logs the same losses as an unbroken one."""
        tr_loss = getattr(self, "_tr_loss", None)
        return {"tr_loss": float(tr_loss.item()) if tr_loss is not None else 0.0,
                "total_loss_scalar": float(getattr(self, "_total_loss_scalar", 0.0)),
                "globalstep_last_logged": int(getattr(self, "_globalstep_last_logged", 0)),
                "nan_skipped_steps": int(self.nan_skipped_steps),
                # values a trainer keeps for its next log (``logged_means.MeanLogs``: rewards, partial losses)
                "logged_parts": {k: list(v) for k, v in (self.__dict__.get("_parts") or {}).items()}}

    def restore_loss_bookkeeping(self, saved: dict[str, Any], global_step: int, device: Any) -> None:
        """Put back ``loss_bookkeeping()`` of a checkpoint (at ``on_train_begin`` of the resumed run)."""
        self._tr_loss = torch.tensor(float(saved.get("tr_loss", 0.0)), device=device)
        self._total_loss_scalar = float(saved.get("total_loss_scalar", 0.0))
        self._globalstep_last_logged = int(saved.get("globalstep_last_logged", global_step))
        self._initial_global_step = 0  # train_loss averages over the whole run, as without the break
        self.nan_skipped_steps = int(saved.get("nan_skipped_steps", 0))
        if saved.get("logged_parts") and hasattr(self, "logged_parts"):
            parts = self.logged_parts  # type: ignore[attr-defined]
            parts.clear()
            parts.update({k: list(v) for k, v in saved["logged_parts"].items()})

    # -- the training loop ---------------------------------------------------------------------
    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
        """The Trainer's step; the NaN guard sees each micro-batch's loss. Before the first one the
        memory probe runs the longest batch; running out of memory names the batch and what to change."""
        probe = self.memory_probe
        if probe is not None and probe.rows is not None:
            self._probe_memory(model, probe)
        try:
            loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        except Exception as err:
            from tunesmith.training.memory_probe import is_out_of_memory, out_of_memory_error

            if probe is None or not is_out_of_memory(err):
                raise
            step = self.state.global_step + 1  # type: ignore[attr-defined]
            raise out_of_memory_error(err, inputs, probe.settings, probe.device, f"at step {step}") from err
        if self.nan_guard is not None:
            self.nan_guard.record_loss(loss)
        if self.checkpoint_fingerprint is not None and isinstance(loss, torch.Tensor):
            # transformers' logging_nan_inf_filter, on the device: tunesmith's arguments switch
            # transformers' own check off, which reads the loss back every micro-batch.
            tr_loss = getattr(self, "_tr_loss", None)
            if isinstance(tr_loss, torch.Tensor):
                since = self.state.global_step - self._globalstep_last_logged  # type: ignore[attr-defined]
                loss = finite_for_log(loss, tr_loss, since)
        return loss

    def _track_num_input_tokens(self, inputs: Any) -> None:
        """Tokens seen, from the count the batch brought from the host (``host_counts.HostCounts``)
        in a single-process run; otherwise transformers' count, which reads it back from the device."""
        from tunesmith.training.host_counts import TOKENS

        counted = inputs.get(TOKENS) if isinstance(inputs, dict) else None
        if (isinstance(counted, int) and self.args.world_size == 1  # type: ignore[attr-defined]
                and self.args.include_num_input_tokens_seen == "non_padding"):  # type: ignore[attr-defined]
            self.state.num_input_tokens_seen += counted  # type: ignore[attr-defined]
            return
        super()._track_num_input_tokens(inputs)  # type: ignore[misc]

    def probe_step(self, model: Any, inputs: Any) -> Any:
        """The Trainer's own forward and backward pass on ``inputs``, without the NaN guard (the memory probe)."""
        return super().training_step(model, inputs)  # type: ignore[misc]

    def _probe_memory(self, model: Any, probe: Any) -> None:
        """Run the longest batch once (``memory_probe.run_probe``) and say so; out of memory stops the run."""
        import time

        from tunesmith.training.memory_probe import batch_shape, is_out_of_memory, out_of_memory_error, run_probe

        rows, probe.rows = probe.rows, None
        start = time.perf_counter()
        try:
            inputs = run_probe(self, model, rows)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            inputs = self.data_collator(rows)  # type: ignore[attr-defined]
            raise out_of_memory_error(err, inputs, probe.settings, probe.device,
                                      "in the memory probe, before the first step (the longest batch of the "
                                      "training set)") from err
        probe.shape, probe.seconds = batch_shape(inputs), time.perf_counter() - start
        logger.info(f"Memory probe: the longest batch ({probe.shape}; longest sequence {probe.batch.longest} "
                    f"tokens) ran forward and backward in {probe.seconds:.1f} s{probe.peak_note()}")

    def _run_epoch(self, *args: Any, **kwargs: Any) -> Any:
        """No steps past the end: a run resumed from its final checkpoint (killed after the last step,
        before its record was written) trains no further; transformers would run the rest of that
        epoch's steps otherwise. Out of memory outside a step's forward and backward pass (the
        optimizer's first step allocates its state) names the settings to change, as in a step."""
        state = self.state  # type: ignore[attr-defined]
        if self.checkpoint_fingerprint is not None and 0 < state.max_steps <= state.global_step:
            self.control.should_training_stop = True  # type: ignore[attr-defined]
            return None
        try:
            return super()._run_epoch(*args, **kwargs)  # type: ignore[misc]
        except Exception as err:
            from tunesmith.errors import TunesmithError
            from tunesmith.training.memory_probe import is_out_of_memory, out_of_memory_error

            probe = self.memory_probe
            if probe is None or isinstance(err, TunesmithError) or not is_out_of_memory(err):
                raise
            raise out_of_memory_error(err, {}, probe.settings, probe.device,
                                      f"at step {state.global_step + 1}") from err


def finite_for_log(loss: torch.Tensor, accumulated: torch.Tensor, steps_since_log: int) -> torch.Tensor:
    """``loss``, or where it is NaN / inf the mean of the losses accumulated since the last log:
    the value transformers' ``logging_nan_inf_filter`` adds to the logged loss, computed on the
    device instead of read back."""
    return torch.where(torch.isfinite(loss), loss, accumulated / (1 + steps_since_log))


class TunesmithTrainer(ReliableTrainerMixin, Trainer):
    """``transformers.Trainer`` with tunesmith's reliability methods; the built-in trainers' base."""


_GUARDED: dict[type, type] = {}


def guarded_class(cls: type) -> type:
    """``cls`` itself when it has the reliability methods; else a subclass with ``ReliableTrainerMixin`` first."""
    if issubclass(cls, ReliableTrainerMixin):
        return cls
    if cls not in _GUARDED:
        _GUARDED[cls] = type(f"Guarded{cls.__name__}", (ReliableTrainerMixin, cls),
                             {"__doc__": f"{cls.__name__} with tunesmith's reliability methods."})
    return _GUARDED[cls]


def guard(trainer: Any, fingerprint: dict[str, Any], nan_guard: Any = None, memory_probe: Any = None) -> Any:
    """Switch the reliability methods on for ``trainer`` (a ``transformers.Trainer``) and return it;
    ``memory_probe`` (``memory_probe.MemoryProbe``) runs the longest batch before the first step."""
    if not isinstance(trainer, ReliableTrainerMixin):
        trainer.__class__ = guarded_class(type(trainer))  # a registered trainer of the user's own class
    trainer.checkpoint_fingerprint = fingerprint
    trainer.nan_guard = nan_guard
    trainer.memory_probe = memory_probe
    trainer.nan_skipped_steps = 0
    return trainer
