"""SIGTERM and SIGINT during training: finish the current optimizer step, save a checkpoint, say
where, and stop with exit code 143 (SIGTERM) or 130 (SIGINT).

A signal that arrives while the model is being evaluated (``train.eval_steps``) ends the
evaluation after the current batch: the step is complete, so its checkpoint is saved at once
instead of after an evaluation that may take minutes. A stop requested at a step's end skips the
evaluation that step would have run.

A second signal while that checkpoint is being written ends the process at once (the default
action); the checkpoint before it stays intact because checkpoints are atomic. In a run of several
processes the stop request is shared at each step, so every process stops at the same step.

A SIGTERM that the launcher sends because another process of the run failed is not a request to
save: the process stops at once (``StoppedByPeer``), naming the process that failed.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from transformers import TrainerCallback

from tunesmith.errors import Interrupted

logger = logging.getLogger(__name__)

EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}  # 128 + the signal number, as shells report it


class EvaluationStopped(Exception):
    """Raised out of the evaluation loop after the batch during which a stop was requested."""


class StopRequest(TrainerCallback):
    """Turns a received signal into "save a checkpoint and stop" at the end of the current step,
    or after the current batch of an evaluation."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.step: Optional[int] = None

    def request(self, signum: int) -> None:
        """Remember the first signal; the next step end (or evaluation batch) saves and stops."""
        if self.signum is None:
            self.signum = signum

    def _stopping(self, state: Any) -> bool:
        if _shared_flag(self.signum is not None):
            self.signum = self.signum or signal.SIGTERM  # another process got it
            self.step = state.global_step
            return True
        return False

    def on_step_end(self, args, state, control, **kwargs):
        if self._stopping(state):
            control.should_save = True
            control.should_training_stop = True
            control.should_evaluate = False  # the checkpoint now, not after a long evaluation
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.signum is not None:
            control.should_evaluate = False
        return control

    def on_prediction_step(self, args, state, control, **kwargs):
        if self._stopping(state):
            raise EvaluationStopped(f"evaluation stopped at step {state.global_step}")
        return control


def _shared_flag(local: bool) -> bool:
    """True on every process when any process has the flag (one tiny all-reduce per step)."""
    try:
        import torch
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        return local
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return local
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([1 if local else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


@contextmanager
def stop_on_signals(trainer: Any) -> Iterator[StopRequest]:
    """While training: SIGTERM / SIGINT ask for a checkpoint and a clean stop (see the module docstring).

    Handlers are installed only in the main thread (Python allows no other); elsewhere the
    signals keep their default action.
    """
    stop = StopRequest()
    trainer.add_callback(stop)
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        def handle(signum: int, frame: Any) -> None:
            _raise_if_peer_failed()
            stop.request(signum)
            logger.info(f"\n{signal.Signals(signum).name} received: saving a checkpoint at the end of this step, "
                        "then stopping (send it again to stop at once)")
            for sig, old in previous.items():  # a second signal gets the old behaviour
                signal.signal(sig, old)

        for sig in EXIT_CODES:
            previous[sig] = signal.signal(sig, handle)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        trainer.remove_callback(stop)


@contextmanager
def stop_at_once_on_signals(doing: str, afterwards: str) -> Iterator[None]:
    """Outside the training steps (measuring the base or the tuned model): SIGTERM / SIGINT stop the
    work at once, raising ``Interrupted`` (exit 143 / 130) with what was being done and what to do next.

    A generation or an evaluation batch is cut short where it is; nothing of it needs saving.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        _raise_if_peer_failed()
        name = signal.Signals(signum).name
        raise Interrupted(f"{name}: stopped while {doing}; {afterwards}", EXIT_CODES.get(signal.Signals(signum), 143))

    previous = {sig: signal.signal(sig, handle) for sig in EXIT_CODES}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _raise_if_peer_failed() -> None:
    """In a signal handler: stop at once when the signal means that another process failed."""
    from tunesmith.training.distributed import peer_failure, stopped_by_peer

    failure = peer_failure()
    if failure is not None:
        raise stopped_by_peer(failure)


def train_until_stopped(trainer: Any, **train_kwargs: Any) -> Any:
    """``trainer.train(**train_kwargs)``; when a stop interrupted an evaluation, the step's checkpoint
    is saved here (the optimizer step is complete) and None is returned instead of a ``TrainOutput``."""
    try:
        return trainer.train(**train_kwargs)
    except EvaluationStopped:
        logger.info(f"Evaluation interrupted; saving the checkpoint of step {trainer.state.global_step}")
        trainer.save_checkpoint_now()  # atomic (checkpoints.py), as at any step end
        return None


def raise_if_stopped(stop: StopRequest, trainer: Any) -> None:
    """After ``trainer.train()`` returned: raise ``Interrupted`` (exit 143 / 130) naming the checkpoint."""
    if stop.signum is None or stop.step is None:
        return
    from pathlib import Path

    from tunesmith.training.checkpoints import newest_checkpoint

    newest = newest_checkpoint(Path(trainer.args.output_dir))
    where = f"checkpoint saved to {newest.path} (step {newest.step})" if newest else "no checkpoint could be saved"
    name = signal.Signals(stop.signum).name
    raise Interrupted(f"{name}: training stopped at step {stop.step}; {where}. Run the same command again to "
                      "resume (train.resume=auto)", EXIT_CODES.get(signal.Signals(stop.signum), 143))
