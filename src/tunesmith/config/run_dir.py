"""The run directory: the one place that names its files, creates it, finishes it and reads it back.

A run directory holds::

    config.yaml          the resolved config, saved before training starts
    checkpoints/         checkpoint-N folders while the run trains (tunesmith.training.checkpoints)
    metrics.jsonl        loss, learning rate and evaluation logs, one JSON object a line
    resources.jsonl      memory and tokens per second
    adapter_model.safetensors + adapter_config.json (or model.safetensors + config.json: full weights)
    tokenizer files      with chat_template.jinja
    loss_curve.png       the training and evaluation loss
    reward_curve.png     reward, KL and completion length per step (train.trainer=grpo)
    eval_results.json    the base and the tuned model's held-out scores
    report.html          the whole run in one self-contained file
    error.log            tracebacks of internal errors (tunesmith.cli.error_boundary)
    run.json             the run record, written last: its presence marks a finished run

Example:
    ``run = RunDir("runs/arith"); run.config_file, run.is_finished()`` -> ``(PosixPath('runs/arith/config.yaml'), True)``
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.errors import RunDirError

if TYPE_CHECKING:
    from tunesmith.config.schema import TrainConfig


def _path_of(name: str) -> property:
    """A ``RunDir`` property: the path of ``name`` in the run directory."""
    return property(lambda run: run.path / name, doc=f"``<run directory>/{name}``.")


class RunDir:
    """One run directory: its file names, and creating, finishing, reading and resuming it."""

    CONFIG = "config.yaml"
    RECORD = "run.json"  # written last: its presence marks a finished run
    METRICS = "metrics.jsonl"
    RESOURCES = "resources.jsonl"
    CHECKPOINTS = "checkpoints"
    EVAL_RESULTS = "eval_results.json"
    LOSS_CURVE = "loss_curve.png"
    REWARD_CURVE = "reward_curve.png"
    REPORT = "report.html"
    ERROR_LOG = "error.log"
    ADAPTER_CONFIG = "adapter_config.json"
    FULL_WEIGHTS = "model.safetensors"
    MODEL_CONFIG = "config.json"  # a transformers model folder's config (not tunesmith's config.yaml)
    TRAINING_ARGS = "training_args.bin"  # a pickle the Trainer writes; never kept (config.yaml says it all)

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- the files: ``run.config_file`` is ``<run>/config.yaml``, and so on ------------------
    config_file = _path_of(CONFIG)
    record_file = _path_of(RECORD)
    metrics_file = _path_of(METRICS)
    resources_file = _path_of(RESOURCES)
    checkpoints = _path_of(CHECKPOINTS)
    eval_results_file = _path_of(EVAL_RESULTS)
    loss_curve_file = _path_of(LOSS_CURVE)
    reward_curve_file = _path_of(REWARD_CURVE)
    report_file = _path_of(REPORT)
    error_log = _path_of(ERROR_LOG)
    training_args_file = _path_of(TRAINING_ARGS)

    # -- what the folder is -------------------------------------------------------------------
    def has_config(self) -> bool:
        """True when the folder holds tunesmith's ``config.yaml``."""
        return self.config_file.is_file()

    def is_finished(self) -> bool:
        """True when the folder holds ``run.json``, which a run writes last."""
        return self.record_file.is_file()

    def is_model_folder(self) -> bool:
        """True for a plain transformers model folder (config.json, no tunesmith ``config.yaml``)."""
        return not self.has_config() and (self.path / self.MODEL_CONFIG).is_file()

    def has_adapter(self) -> bool:
        """True when the tuned weights are an adapter (``adapter_config.json``), not full weights."""
        return (self.path / self.ADAPTER_CONFIG).is_file()

    def has_weights(self) -> bool:
        """True when the folder holds tuned weights: an adapter or full ``model.safetensors``."""
        return self.has_adapter() or (self.path / self.FULL_WEIGHTS).is_file()

    # -- reading ------------------------------------------------------------------------------
    def read_config(self) -> "TrainConfig":
        """The checked ``TrainConfig`` of ``config.yaml``; ``RunDirError`` when there is none."""
        from tunesmith.config.compose import read_saved_config

        if not self.has_config():
            raise RunDirError(f"{self.path}: not a tunesmith run directory (no {self.CONFIG})")
        return read_saved_config(self.config_file)

    def require_finished(self, doing: str = "nothing to load") -> None:
        """``RunDirError`` unless the run finished (``run.json`` is there)."""
        if not self.is_finished():
            raise RunDirError(f"{self.path}: the run did not finish (no {self.RECORD}); {doing}")

    def read_record(self) -> dict[str, Any]:
        """``run.json`` as a dict; {} when the run has not finished."""
        if not self.is_finished():
            return {}
        return json.loads(self.record_file.read_text(encoding="utf-8"))

    # -- creating and finishing ---------------------------------------------------------------
    @staticmethod
    def default_path() -> Path:
        """``runs/<YYYYmmdd-HHMMSS>`` in the working directory."""
        return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")

    @classmethod
    def create(cls, output_dir: str | os.PathLike | None, overwrite: bool = False,
               continuing: bool = False) -> "RunDir":
        """Create the run directory (``output_dir``, else ``runs/<timestamp>``).

        Never writes into a non-empty folder unless ``overwrite`` is set or the run continues there
        (``continuing``: an unfinished run of the same config, checked by
        ``tunesmith.training.resume.plan_resume``, whose records are kept).
        """
        from tunesmith.config.run_folders import check_output_dir, make_output_dir

        path = check_output_dir(output_dir) if output_dir else cls.default_path()
        if path.exists() and any(path.iterdir()) and not (overwrite or continuing):
            raise RunDirError(
                f"output_dir: {str(path)!r} is not empty; choose another output_dir or pass "
                "overwrite=true (or --overwrite) to replace what is there"
            )
        make_output_dir(path)
        run = cls(path)
        if not continuing:
            for stale in (run.metrics_file, run.record_file):  # an overwritten run starts from a clean log
                stale.unlink(missing_ok=True)
        return run

    def save_config(self, cfg: "TrainConfig") -> None:
        """Write ``config.yaml`` (the resolved config)."""
        from tunesmith.config.compose import save_config

        save_config(cfg, self.config_file)

    def write_eval_results(self, results: dict[str, Any]) -> None:
        """Write ``eval_results.json`` (the before / after held-out measurements)."""
        self.eval_results_file.write_text(json.dumps(results, indent=2), encoding="utf-8")

    def write_record(self, record: dict[str, Any]) -> None:
        """Write ``run.json`` whole or not at all (a temporary file, then a rename): it marks a finished run."""
        tmp = self.path / f".{self.RECORD}.tmp"
        tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
        tmp.replace(self.record_file)

    # -- resuming -----------------------------------------------------------------------------
    def restart_from_zero(self) -> None:
        """Drop what an earlier attempt left (checkpoints, incomplete or replaced, and the metrics log)."""
        import shutil

        shutil.rmtree(self.checkpoints, ignore_errors=True)
        self.metrics_file.unlink(missing_ok=True)
