"""Trainer callbacks: the progress bar, ``metrics.jsonl``, and the ``CALLBACKS`` registry.

Users name callbacks in the config (``train.callbacks: [name, ...]``, arguments in
``train.callback_args.<name>``) after registering them::

    from transformers import TrainerCallback
    from tunesmith.training import register_callback

    @register_callback("print_loss")
    class PrintLoss(TrainerCallback):
        def __init__(self, every: int = 10):
            self.every = every

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.global_step % self.every == 0 and logs and "loss" in logs:
                print(state.global_step, logs["loss"])

A constructor that takes ``run_dir`` receives the run directory. ``package.module:Class`` works
without registering.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from transformers import EarlyStoppingCallback, TrainerCallback

from tunesmith.config.schema import TrainSection
from tunesmith.errors import ConfigError
from tunesmith.registry import Registry

# Entries are ``transformers.TrainerCallback`` classes; tunesmith supplies ``run_dir`` to a
# constructor that takes it, and ``train.callback_args.<name>`` holds the other arguments.
CALLBACKS: Registry[Any] = Registry("callback", key="train.callbacks", instantiate=True, provided=("run_dir",))


def register_callback(name: str, *, overwrite: bool = False) -> Callable[[Any], Any]:
    """Decorator: register a ``transformers.TrainerCallback`` class as ``train.callbacks=[<name>]``."""

    def add(obj: Any) -> Any:
        CALLBACKS.register(name, obj, overwrite=overwrite)
        return obj

    return add


register_callback("early_stopping")(EarlyStoppingCallback)  # args: early_stopping_patience, _threshold


def check_callbacks(train: TrainSection) -> None:
    """Resolve every name in ``train.callbacks`` and check its arguments; nothing is built."""
    for name in train.callbacks:
        CALLBACKS.check(name, train.callback_args.get(name, {}), args_key=f"train.callback_args.{name}")


def build_callbacks(train: TrainSection, run_dir: Path, params: dict[str, Any] | None = None) -> list[Any]:
    """The callbacks the config asks for: TensorBoard / MLflow (``train.log_to``), early stopping
    (``train.early_stopping_patience``) and ``train.callbacks``, in that order.

    ``params``: flat ``{dotted key: value}`` of the run's config, recorded by MLflow.
    """
    from tunesmith.training.loggers import MlflowLogger, TensorBoardLogger

    out: list[Any] = []
    if "tensorboard" in train.log_to:
        out.append(TensorBoardLogger(Path(train.logging_dir) if train.logging_dir else run_dir / "tensorboard"))
    if "mlflow" in train.log_to:
        out.append(MlflowLogger(run_dir, train.mlflow_tracking_uri, train.mlflow_experiment, params))
    if train.early_stopping_patience and "early_stopping" not in train.callbacks:
        out.append(EarlyStoppingCallback(train.early_stopping_patience, train.early_stopping_threshold))
    for name in train.callbacks:
        callback = CALLBACKS.build(name, train.callback_args.get(name, {}), args_key=f"train.callback_args.{name}",
                                   supplied={"run_dir": run_dir})
        if not isinstance(callback, TrainerCallback):
            raise ConfigError(f"train.callbacks: '{name}' built a {type(callback).__name__}, not a "
                              "transformers.TrainerCallback")
        out.append(callback)
    return out


class ProgressBar(TrainerCallback):
    """One tqdm bar over optimizer steps showing loss, learning rate and tokens/s (ETA from tqdm)."""

    def __init__(self) -> None:
        self.bar = None
        self.start = 0.0
        self.tokens_at_start = 0

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        from tunesmith.config.logs import show_progress

        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, desc="Training", unit="step", dynamic_ncols=True,
                            disable=not show_progress())
            self.start = time.perf_counter()
            self.tokens_at_start = int(state.num_input_tokens_seen or 0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs or "loss" not in logs:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        tok_s = (int(state.num_input_tokens_seen or 0) - self.tokens_at_start) / elapsed
        self.bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs.get('learning_rate', 0):.2e}",
                             tok_s=f"{tok_s:.0f}", refresh=True)

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        """Take the bar off the screen (also when training stopped with an error, so later lines print
        as plain lines rather than around a bar nobody updates)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def close_progress_bars(trainer: Any) -> None:
    """Close the progress bars of ``trainer``'s callbacks (after training, however it ended)."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ProgressBar):
            callback.close()


class MetricsJsonl(TrainerCallback):
    """Appends every log (loss, lr, eval loss, ...) as one JSON line to ``metrics.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch,
                                  "elapsed_s": round(time.perf_counter() - self.start, 3),
                                  "tokens_seen": int(state.num_input_tokens_seen or 0)}
        record.update({k: v for k, v in logs.items() if isinstance(v, (int, float, str))})
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file, oldest first; [] when there is none."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
