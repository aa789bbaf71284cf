"""Dashboards: TensorBoard and MLflow callbacks (``train.log_to``). Only the main process writes.

Both read the same logs as ``metrics.jsonl`` (loss, learning rate, grad norm, eval loss, ...).
MLflow writes to a local file store in ``<run_dir>/mlruns`` unless ``train.mlflow_tracking_uri``
names another store; nothing is sent over the network unless that URI is a server.

A tracking server is reached with bounded patience: before anything is loaded the run checks that
it accepts a connection and begins to answer (``TRACKER_CONNECT_TIMEOUT_S``), and MLflow's own HTTP calls time out after
``MLFLOW_HTTP_REQUEST_TIMEOUT`` seconds with ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` retries (tunesmith's
defaults: 10 s and 1; set the variables to change them), instead of MLflow's 120 s and 7 retries
(about 4 minutes during which a stop request would wait). During training, metrics are sent by a
background thread, so a slow server never slows a step nor holds a stop; at the end of training
what is still queued gets ``FLUSH_TIMEOUT_S`` seconds. A metric that cannot be sent is reported once
as a warning and training goes on. Error messages never show the URI's password or tokens
(``config/secrets.py``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

from transformers import TrainerCallback

from tunesmith.config.secrets import mask_text
from tunesmith.errors import ConfigError

logger = logging.getLogger(__name__)
TRACKER_CONNECT_TIMEOUT_S = 5.0
FLUSH_TIMEOUT_S = 5.0  # at the end of training: how long queued metrics may still take to send
# MLflow's HTTP patience unless the user set these variables: 10 s per request, one retry.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def check_tracking_server(uri: Optional[str], timeout_s: float = TRACKER_CONNECT_TIMEOUT_S) -> None:
    """Raise ``ConfigError`` naming ``train.mlflow_tracking_uri`` (its password masked) when an
    ``http(s)://`` tracking server does not accept a connection, or does not begin to answer a
    request, within ``timeout_s`` seconds in all.

    Only liveness is checked (any HTTP answer will do, an error status too); other URIs (a file
    store, a database) are left to MLflow.
    """
    import socket
    import time
    from urllib.parse import urlsplit

    if not uri or not uri.lower().startswith(("http://", "https://")):
        return
    try:
        parts = urlsplit(uri)
        host, port = parts.hostname, parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as err:
        raise ConfigError(f"train.mlflow_tracking_uri: {mask_text(uri)!r} is not a valid URL: "
                          f"{mask_text(str(err))}") from None
    if not host:
        raise ConfigError(f"train.mlflow_tracking_uri: {mask_text(uri)!r} names no host")
    deadline = time.monotonic() + timeout_s
    step = "cannot be reached"
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            step = "does not answer"
            raw.settimeout(max(deadline - time.monotonic(), 0.1))
            conn = _tls(raw, host) if parts.scheme.lower() == "https" else raw
            conn.sendall(f"GET /health HTTP/1.0\r\nHost: {host}\r\n\r\n".encode("ascii", "replace"))
            if not conn.recv(1):
                raise ConnectionResetError("the connection was closed without an answer")
    except OSError as err:
        reason = "no answer" if isinstance(err, socket.timeout) else (err.strerror or str(err) or type(err).__name__)
        raise ConfigError(f"train.mlflow_tracking_uri: the tracking server {mask_text(uri)} {step} ({reason} within "
                          f"{timeout_s:g} s); start it, fix the URI, or remove mlflow from train.log_to") from None


def _tls(raw: Any, host: str) -> Any:
    """``raw`` wrapped in TLS for a liveness check only (certificates are MLflow's to verify)."""
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(raw, server_hostname=host)


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
    for name, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError("train.log_to: 'mlflow' needs MLflow: pip install 'tunesmith[logging]' "
                          "(or pip install mlflow-skinny; the full mlflow package adds `mlflow ui`)") from None
    return MlflowClient(tracking_uri=tracking_uri)


class BackgroundSender:
    """Runs calls (``send(fn)``) one after another on a daemon thread; ``close(timeout)`` waits at
    most ``timeout`` seconds for the queue to drain and returns how many calls were left unsent.
    A call that raises is reported once (masked) as a warning; the others still run."""

    def __init__(self, what: str) -> None:
        import queue
        import threading

        self.what = what
        self.calls: "queue.Queue[Any]" = queue.Queue()
        self.failed = False
        self.thread = threading.Thread(target=self._run, name=f"tunesmith-{what}", daemon=True)
        self.thread.start()

    def send(self, fn: Any) -> None:
        """Queue ``fn()`` to run on the background thread."""
        self.calls.put(fn)

    def close(self, timeout: float = FLUSH_TIMEOUT_S) -> int:
        """Stop after the queued calls, waiting at most ``timeout`` seconds; the number left unsent."""
        self.calls.put(None)
        self.thread.join(timeout)
        # Still running: the call in flight plus those queued behind it (the queue's last item is the stop).
        return self.calls.qsize() if self.thread.is_alive() else 0

    def _run(self) -> None:
        while (fn := self.calls.get()) is not None:
            try:
                fn()
            except Exception as err:  # a network blip does not end a training run
                if not self.failed:
                    logger.warning("%s: a record could not be sent (%s); training goes on", self.what,
                                   mask_text(_first_line(err)))
                self.failed = True


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
        self.sender: Optional[BackgroundSender] = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self.client is not None:
            return
        from mlflow.entities import Param

        self.client = mlflow_client(self.tracking_uri)
        try:
            found = self.client.get_experiment_by_name(self.experiment)
            experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
            self.run_id = self.client.create_run(experiment_id, run_name=self.run_dir.name).info.run_id
            params = [Param(k, str(v)[:500]) for k, v in sorted(self.params.items())]  # MLflow caps values at 500
            for start in range(0, len(params), 100):  # and batches at 100 parameters
                self.client.log_batch(self.run_id, params=params[start:start + 100])
        except Exception as err:  # MLflow's exceptions quote the URI, password included
            self.client = None
            raise ConfigError(f"train.mlflow_tracking_uri: MLflow at {mask_text(self.tracking_uri)} refused the "
                              f"run: {mask_text(_first_line(err))}") from None
        self.sender = BackgroundSender("MLflow")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.client is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, state.global_step) for k, v in _numbers(logs).items()]
        if metrics and self.sender is not None:
            client, run_id = self.client, self.run_id
            self.sender.send(lambda: client.log_batch(run_id, metrics=metrics))

    def on_train_end(self, args, state, control, **kwargs):
        if self.client is not None and self.sender is not None:
            client, run_id = self.client, self.run_id
            self.sender.send(lambda: client.set_terminated(run_id, "FINISHED"))
            left = self.sender.close(FLUSH_TIMEOUT_S)
            if left:
                logger.warning("MLflow: %d record(s) were not sent within %g s; the run's results are saved "
                               "in the run directory", left, FLUSH_TIMEOUT_S)
            self.client = self.sender = None


def _first_line(err: BaseException) -> str:
    """``TypeName: first line of the message``."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
