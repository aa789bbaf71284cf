"""NaN / inf loss or gradients (``train.nan_policy``).

Before each optimizer step the guard looks at the losses of the step's micro-batches and at every
trainable gradient. When one is not finite:

* ``stop`` (default): training stops before the bad update with a ``TrainingError`` naming the
  step, the micro-batch, the dataset indices of its examples and the last good checkpoint;
* ``skip``: the gradients are dropped so the optimizer leaves the weights alone for that step
  (the learning-rate schedule still advances); skips are counted, printed, logged as
  ``nan_skipped_steps`` and recorded in ``run.json``.

transformers alone only hides a NaN loss from the logs and applies the update anyway.

The losses stay on the device until the step: they and every gradient are checked by kernels there
and read back together, one read per optimizer step (on a GPU each read waits for the queued work).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Optional

import torch
from transformers import TrainerCallback

from tunesmith.errors import TrainingError

logger = logging.getLogger(__name__)


class NanGuard(TrainerCallback):
    """Checks losses and gradients before each optimizer step (see the module docstring)."""

    def __init__(self, trainer: Any, policy: str = "stop") -> None:
        self.trainer = trainer
        self.policy = policy
        self.losses: list[tuple[int, Any]] = []  # (micro-batch index in the epoch, loss tensor) since the last step
        self.micro = 0  # micro-batches consumed in this epoch, resumed runs included
        self.resume_skip = 0

    # --- counting micro-batches, so a bad one can be traced to its examples -----------------------

    def record_loss(self, loss: Any) -> None:
        """Record one micro-batch's loss (called by the trainer's ``training_step``); nothing is read
        back from the device here."""
        self.losses.append((self.micro, torch.as_tensor(loss).detach()))
        self.micro += 1

    def on_train_begin(self, args, state, control, **kwargs):
        steps_per_epoch = _steps_per_epoch(self.trainer, args)
        if state.global_step and steps_per_epoch:  # a resumed run skips this many micro-batches of its epoch
            self.resume_skip = (state.global_step % steps_per_epoch) * args.gradient_accumulation_steps

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.micro, self.resume_skip = self.resume_skip, 0
        self.losses.clear()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        losses, self.losses = self.losses, []
        bad_loss, bad_grads = _non_finite(losses, self.trainer.model)
        if bad_loss is None and not bad_grads:
            return
        step = state.global_step + 1  # the step being taken now
        what = (f"the loss was {bad_loss[1]} (micro-batch {bad_loss[0]} of this epoch)" if bad_loss
                else f"gradients of {len(bad_grads)} parameter(s) were not finite (e.g. {bad_grads[0]})")
        if self.policy == "skip":
            self.trainer.model.zero_grad(set_to_none=True)  # no gradients: the optimizer leaves the weights
            self.trainer.nan_skipped_steps += 1
            logger.warning(f"step {step}: {what}; skipped this optimizer step "
                           f"({self.trainer.nan_skipped_steps} skipped so far; train.nan_policy=skip)")
            return
        micro = bad_loss[0] if bad_loss else (losses[0][0] if losses else None)
        raise TrainingError(_diagnostic(self.trainer, args, state, step, what, micro, len(losses)))

    def on_log(self, args, state, control, logs=None, **kwargs):
        skipped = int(getattr(self.trainer, "nan_skipped_steps", 0))
        if logs is not None and skipped and "loss" in logs:
            logs["nan_skipped_steps"] = skipped  # reaches metrics.jsonl and the dashboards


def install_nan_guard(trainer: Any, policy: str) -> NanGuard:
    """Add the guard to ``trainer`` (``policy``: ``stop`` or ``skip``), first among its callbacks so
    its log entries reach metrics.jsonl and the dashboards, and return it. The trainer hands it each
    micro-batch's loss (``tunesmith.training.guarded_trainer``)."""
    guard = NanGuard(trainer, policy)
    trainer.callback_handler.callbacks.insert(0, guard)
    return guard


def _non_finite(losses: list[tuple[int, Any]], model: Any) -> tuple[Optional[tuple[int, float]], list[str]]:
    """The first non-finite loss (micro-batch, value) or None, and the names of parameters whose
    gradient holds a NaN or inf; one read from the device when everything is finite.

    All gradients are checked at once with the fused kernel the AMP grad scaler uses (it multiplies by
    exactly 1.0, so no value changes): about 5 ms for 420 LoRA gradients on a CPU, ten times less
    than one check per tensor. The losses' check joins it, and a single flag per device comes back.
    The per-tensor checks only run to name what was bad.
    """
    named = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
    flags = _non_finite_flags([grad for _, grad in named])
    if losses:
        device = losses[0][1].device
        values = torch.cat([v.float().reshape(-1).to(device) for _, v in losses])
        flags.append((~torch.isfinite(values)).any().float().reshape(1))
    if not flags or not bool(torch.cat([f.to(flags[0].device) for f in flags]).any()):
        return None, []
    read = [(i, float(v.float().sum())) for i, v in losses]
    bad_loss = next(((i, v) for i, v in read if not math.isfinite(v)), None)
    bad_grads = [name for name, grad in named if not bool(torch.isfinite(grad).all())]
    return bad_loss, bad_grads


def _non_finite_flags(grads: list[Any]) -> list[Any]:
    """One flag tensor per (device, dtype) group of ``grads``: non-zero where a gradient is not finite."""
    groups: dict[tuple, list[Any]] = {}
    for grad in grads:
        groups.setdefault((grad.device, grad.dtype), []).append(grad)
    found = []
    for (device, _), group in groups.items():
        flag = torch.zeros(1, device=device)
        try:
            torch._amp_foreach_non_finite_check_and_unscale_(group, flag, torch.ones(1, device=device))
        except (RuntimeError, TypeError):  # a dtype or device the fused kernel does not take
            flag.fill_(float(not all(bool(torch.isfinite(g).all()) for g in group)))
        found.append(flag)
    return found


def _steps_per_epoch(trainer: Any, args: Any) -> int:
    try:
        batches = len(trainer.callback_handler.train_dataloader)
    except (TypeError, ValueError, AttributeError):  # an iterable dataset has no length
        return 0
    return max(batches // args.gradient_accumulation_steps + int(batches % args.gradient_accumulation_steps > 0), 1)


def batch_example_indices(trainer: Any, micro: Optional[int], epoch: int) -> Optional[list[int]]:
    """Dataset indices of the examples in micro-batch ``micro`` of ``epoch``, read back from the
    Trainer's (seeded) sampler; None when the sampler cannot be replayed."""
    if micro is None:
        return None
    try:
        loader = trainer.callback_handler.train_dataloader  # the loader this run iterates
        batch_sampler = getattr(loader, "batch_sampler", None)
        inner = getattr(batch_sampler, "batch_sampler", batch_sampler)  # accelerate wraps it once more
        sampler = getattr(inner, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        for i, batch in enumerate(inner):
            if i == micro:
                return [int(j) for j in batch]
    except Exception:  # noqa: BLE001 - the diagnostic must never hide the NaN it reports
        return None
    return None


def _diagnostic(trainer: Any, args: Any, state: Any, step: int, what: str, micro: Optional[int],
                micro_batches: int) -> str:
    from tunesmith.training.checkpoints import newest_checkpoint

    epoch = int(state.epoch or 0)
    indices = batch_example_indices(trainer, micro, epoch)
    examples = (f"the micro-batch's examples are training-set indices {indices}" if indices is not None
                else "the examples of the batch could not be traced")
    last = newest_checkpoint(Path(args.output_dir))
    good = (f"the last good checkpoint is {last.path} (step {last.step}): fix the data or lower train.lr, then "
            "run again to resume from it" if last else "no checkpoint was saved yet (train.save_steps)")
    return (f"train.nan_policy=stop: at optimizer step {step} (epoch {epoch}, {micro_batches} micro-batch(es) "
            f"accumulated) {what}; {examples}; the update was not applied; {good}. "
            "Set train.nan_policy=skip to skip such steps instead")
