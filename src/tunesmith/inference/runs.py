"""Run directories: what a finished run holds, and loading it back for inference."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import TrainConfig, read_saved_config
from tunesmith.errors import RunDirError

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"  # written last: its presence marks a finished run


@dataclass
class LoadedRun:
    model: Any
    tokenizer: Any
    config: TrainConfig
    run_dir: Path


def is_finished_run(path: Path) -> bool:
    return (path / RUN_FILE).is_file()


def read_run_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir)
    if not (path / CONFIG_FILE).is_file():
        raise RunDirError(f"{path}: not a tunesmith run directory (no {CONFIG_FILE})")
    return read_saved_config(path / CONFIG_FILE)


def load_run(run_dir: str | Path, device: str | None = None) -> LoadedRun:
    """The tuned model (base + adapter, or full weights) and tokenizer, from the run folder alone."""
    from tunesmith.models.loading import infer_task, load_model, load_model_config, load_tokenizer
    from tunesmith.models.precision import resolve_device

    path = Path(run_dir)
    cfg = read_run_config(path)
    if not is_finished_run(path):
        raise RunDirError(f"{path}: the run did not finish (no {RUN_FILE}); nothing to load")
    device = resolve_device(device or cfg.model.device)
    tokenizer = load_tokenizer(str(path))
    if (path / "adapter_config.json").is_file():
        from peft import PeftModel

        task = infer_task(load_model_config(cfg.model.name_or_path), cfg.model.task)
        base = load_model(cfg.model.name_or_path, task, device=device,
                          trust_remote_code=cfg.model.trust_remote_code, revision=cfg.model.revision)
        model = PeftModel.from_pretrained(base, str(path))
    else:
        task = infer_task(load_model_config(str(path)), cfg.model.task)
        model = load_model(str(path), task, device=device)
    model.eval()
    return LoadedRun(model, tokenizer, cfg, path)


def write_run_record(run_dir: Path, record: dict[str, Any]) -> None:
    (run_dir / RUN_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
