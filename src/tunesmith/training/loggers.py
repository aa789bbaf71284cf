"""Dashboards: TensorBoard and MLflow callbacks (``train.log_to``). Only the main process writes.

Both read the same logs as ``metrics.jsonl`` (loss, learning rate, grad norm, eval loss, ...).
MLflow writes to a local file store in ``<run_dir>/mlruns`` unless ``train.mlflow_tracking_uri``
names another store; nothing is sent over the network unless that URI is a server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from transformers import TrainerCallback

from tunesmith.errors import ConfigError


def _numbers(logs: Optional[dict[str, Any]]) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _tag(key: str) -> str:
    """``eval_loss`` -> ``eval/loss``, ``loss`` -> ``train/loss``: TensorBoard groups by the prefix."""
    return f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"


class TensorBoardLogger(TrainerCallback):
    """Scalars for ``tensorboard --logdir <run_dir>/tensorboard``, one point per log and step."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.writer: Any = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self.writer is not None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.log_to: 'tensorboard' needs the tensorboard package: "
                              "pip install 'tunesmith[logging]' (or pip install tensorboard)") from None
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.writer is None:
            return
        for key, value in _numbers(logs).items():
            self.writer.add_scalar(_tag(key), value, state.global_step)
        self.writer.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def mlflow_client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` for ``tracking_uri`` without usage telemetry; file stores are allowed."""
    # Set before mlflow is imported: no usage reports leave the machine, and the file store (which
    # MLflow 3 keeps in maintenance mode) may be used, since it needs no database server.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError("train.log_to: 'mlflow' needs MLflow: pip install 'tunesmith[logging]' "
                          "(or pip install mlflow-skinny; the full mlflow package adds `mlflow ui`)") from None
    return MlflowClient(tracking_uri=tracking_uri)


class MlflowLogger(TrainerCallback):
    """One MLflow run per training run: the resolved config as parameters, every log as metrics.

    Open it with ``mlflow ui --backend-store-uri <run_dir>/mlruns`` (MLflow 3 wants
    ``MLFLOW_ALLOW_FILE_STORE=true`` in the environment for a file store).
    """

    def __init__(self, run_dir: Path, tracking_uri: Optional[str] = None, experiment: str = "tunesmith",
                 params: Optional[dict[str, Any]] = None) -> None:
        self.run_dir = Path(run_dir)
        self.tracking_uri = tracking_uri or (self.run_dir / "mlruns").resolve().as_uri()
        self.experiment = experiment
        self.params = params or {}
        self.client: Any = None
        self.run_id: Optional[str] = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self.client is not None:
            return
        from mlflow.entities import Param

        self.client = mlflow_client(self.tracking_uri)
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=self.run_dir.name).info.run_id
        params = [Param(k, str(v)[:500]) for k, v in sorted(self.params.items())]  # MLflow caps values at 500
        for start in range(0, len(params), 100):  # and batches at 100 parameters
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.client is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, state.global_step) for k, v in _numbers(logs).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def on_train_end(self, args, state, control, **kwargs):
        if self.client is not None:
            self.client.set_terminated(self.run_id, "FINISHED")
            self.client = None
