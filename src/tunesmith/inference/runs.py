"""Run directories: what a finished run holds, and loading it back for inference.

A run directory holds ``config.yaml`` (the resolved config), the tuned weights (an adapter:
``adapter_model.safetensors`` + ``adapter_config.json``; or ``model.safetensors`` + ``config.json``
for full fine-tuning), the tokenizer files with ``chat_template.jinja``, and ``run.json``, which is
written last and so marks a finished run. ``load_run`` also accepts a plain model folder, such as
one written by ``tunesmith merge``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tunesmith.config import TrainConfig, read_saved_config
from tunesmith.errors import RunDirError

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"  # written last: its presence marks a finished run
ERROR_FILE = "error.log"  # tracebacks of internal errors of a run (tunesmith.cli.error_boundary)


@dataclass
class LoadedRun:
    """A model ready for inference, its tokenizer, the config it was trained with, and its folder."""

    model: Any
    tokenizer: Any
    config: TrainConfig
    run_dir: Path


def is_finished_run(path: Path) -> bool:
    """True when ``path`` holds ``run.json``, which a run writes last."""
    return (path / RUN_FILE).is_file()


def is_model_folder(path: Path) -> bool:
    """True for a plain transformers model folder (config.json, no tunesmith ``config.yaml``)."""
    return not (path / CONFIG_FILE).is_file() and (path / "config.json").is_file()


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The checked ``TrainConfig`` of a run directory's ``config.yaml``; ``RunDirError`` when there is none."""
    from tunesmith.config.run_folders import existing_folder

    path = existing_folder(run_dir)
    if not (path / CONFIG_FILE).is_file():
        raise RunDirError(f"{path}: not a tunesmith run directory (no {CONFIG_FILE}) nor a model folder "
                          "(no config.json)")
    return read_saved_config(path / CONFIG_FILE)


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
    from tunesmith.models.precision import resolve_device

    path = Path(run_dir)
    if is_model_folder(path):
        return _load_model_folder(path, device)
    cfg = with_training_system_prompt(read_run_config(path))
    if not is_finished_run(path):
        raise RunDirError(f"{path}: the run did not finish (no {RUN_FILE}); nothing to load")
    model, tokenizer, _ = load_tuned_model(path, cfg, resolve_device(device or cfg.model.device), quantize=True)
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


def _load_model_folder(path: Path, device: str | None) -> LoadedRun:
    """A plain model folder; a merged one brings back its run's config (system prompt, template)."""
    from tunesmith.models.loading import infer_task, load_model, load_model_config, load_tokenizer
    from tunesmith.models.merge import MERGE_RECORD_FILE, SOURCE_CONFIG_FILE
    from tunesmith.models.precision import resolve_device

    source = path / SOURCE_CONFIG_FILE
    cfg = with_training_system_prompt(read_saved_config(source)) if source.is_file() else TrainConfig()
    record_file = path / MERGE_RECORD_FILE
    record = json.loads(record_file.read_text(encoding="utf-8")) if record_file.is_file() else {}
    task = record.get("task") or infer_task(load_model_config(str(path), cfg.model.trust_remote_code))
    # The folder itself is now the model: its base and adapter are merged in.
    cfg.model.name_or_path, cfg.model.task = str(path), task
    device = resolve_device(device or cfg.model.device)
    model = load_model(str(path), task, device=device, trust_remote_code=cfg.model.trust_remote_code,
                       hub_kernels=cfg.model.hub_kernels)
    model.eval()
    return LoadedRun(model, load_tokenizer(str(path)), cfg, path)


def write_run_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Write ``run.json`` whole or not at all (a temporary file, then a rename): it marks a finished run."""
    tmp = run_dir / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    tmp.replace(run_dir / RUN_FILE)


def default_run_dir() -> Path:
    """``runs/<YYYYmmdd-HHMMSS>`` in the working directory."""
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def prepare_run_dir(cfg: TrainConfig, continuing: bool = False) -> Path:
    """Create the run directory; never write into a non-empty one unless ``overwrite`` is set or the
    run continues there (``continuing``: an unfinished run of the same config, checked by
    ``tunesmith.training.resume.plan_resume``, whose records are kept)."""
    from tunesmith.config.run_folders import check_output_dir, make_output_dir

    run_dir = check_output_dir(cfg.output_dir) if cfg.output_dir else default_run_dir()
    if run_dir.exists() and any(run_dir.iterdir()) and not (cfg.overwrite or continuing):
        raise RunDirError(
            f"output_dir: {str(run_dir)!r} is not empty; choose another output_dir or pass "
            "overwrite=true (or --overwrite) to replace what is there"
        )
    make_output_dir(run_dir)
    if not continuing:
        for stale in ("metrics.jsonl", "run.json"):  # an overwritten run starts from a clean log
            (run_dir / stale).unlink(missing_ok=True)
    return run_dir
