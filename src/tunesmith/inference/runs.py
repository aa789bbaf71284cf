"""Loading a finished run back for inference.

What a run directory holds is described (and named) by ``tunesmith.config.run_dir.RunDir``.
``load_run`` also accepts a plain model folder, such as one written by ``tunesmith merge``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import TrainConfig, read_saved_config
from tunesmith.config.run_dir import RunDir
from tunesmith.errors import RunDirError


@dataclass
class LoadedRun:
    """A model ready for inference, its tokenizer, the config it was trained with, and its folder."""

    model: Any
    tokenizer: Any
    config: TrainConfig
    run_dir: Path


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The checked ``TrainConfig`` of a run directory's ``config.yaml``; ``RunDirError`` when there is none."""
    from tunesmith.config.run_folders import existing_folder

    run = RunDir(existing_folder(run_dir))
    if not run.has_config():
        raise RunDirError(f"{run.path}: not a tunesmith run directory (no {RunDir.CONFIG}) nor a model folder "
                          f"(no {RunDir.MODEL_CONFIG})")
    return run.read_config()


def load_run(run_dir: str | Path, device: str | None = None) -> LoadedRun:
    """The tuned model and tokenizer, from the folder alone.

    Accepts a run directory (base + adapter, or full weights; a qlora/int8 run's base is quantized
    again as in training) or a plain model folder such as a merged one.

    Args:
        run_dir: a finished run directory or a model folder.
        device: ``cpu``, ``cuda``, ...; default: the run's ``model.device``.

    Raises:
        RunDirError: when the folder is neither, or the run did not finish.
    """
    from tunesmith.models.merge import load_tuned_model

    path = Path(run_dir)
    if RunDir(path).is_model_folder():
        return _load_model_folder(path, device)
    cfg = with_training_system_prompt(read_run_config(path))
    RunDir(path).require_finished()
    model, tokenizer, _ = load_tuned_model(path, cfg, _device(device, cfg), quantize=True)
    model.eval()
    return LoadedRun(model, tokenizer, cfg, path)


def with_training_system_prompt(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``data.system_prompt`` set to the one training used when the config left it unset.

    A built-in dataset brings its own system prompt (``arith``: "Solve the problem step by step.
    ..."), which training adds to every example; generate, chat and serve must add it too, or the
    tuned model is asked differently from how it was trained.
    """
    from tunesmith.data.pipeline import resolved_data_config

    if cfg.data.system_prompt is None:
        cfg.data.system_prompt = resolved_data_config(cfg.data).system_prompt
    return cfg


def _device(device: str | None, cfg: TrainConfig) -> str:
    """Where a loaded run goes: ``device`` when given, else the run's own ``model.device`` when it names
    one, else the fastest device this machine has (``best_device``)."""
    from tunesmith.models.precision import best_device, check_device, is_device_name

    chosen = device or cfg.model.device
    return check_device(chosen) if is_device_name(chosen) else best_device()


def _load_model_folder(path: Path, device: str | None) -> LoadedRun:
    """A plain model folder; a merged one brings back its run's config (system prompt, template)."""
    from tunesmith.models.loading import load_model, load_model_config, load_tokenizer, task_from_config
    from tunesmith.models.merge import MERGE_RECORD_FILE, SOURCE_CONFIG_FILE

    source = path / SOURCE_CONFIG_FILE
    cfg = with_training_system_prompt(read_saved_config(source)) if source.is_file() else TrainConfig()
    record_file = path / MERGE_RECORD_FILE
    record = json.loads(record_file.read_text(encoding="utf-8")) if record_file.is_file() else {}
    task = record.get("task") or task_from_config(load_model_config(str(path), cfg.model.trust_remote_code)).value
    # The folder itself is now the model: its base and adapter are merged in.
    cfg.model.name_or_path, cfg.model.task = str(path), task
    device = _device(device, cfg)
    model = load_model(str(path), task, device=device, trust_remote_code=cfg.model.trust_remote_code,
                       hub_kernels=cfg.model.hub_kernels)
    model.eval()
    return LoadedRun(model, load_tokenizer(str(path)), cfg, path)
