"""Everything a finished run directory records, read into plain Python for the report.

    config.yaml         the resolved config            -> RunFiles.config (nested dict)
    run.json            the run record                 -> RunFiles.record
    metrics.jsonl       loss, learning rate, eval logs -> RunFiles.metrics
    resources.jsonl     memory and tokens per second   -> RunFiles.resources
    eval_results.json   before / after                 -> RunFiles.before_after
    eval_*.json         later `tunesmith eval` results -> RunFiles.evaluations
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tunesmith.errors import RunDirError


@dataclass
class RunFiles:
    """The records of one run; any file the run did not write is empty here."""

    run_dir: Path
    config: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    before_after: Optional[dict[str, Any]] = None
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)  # file name -> results


def read_run_files(run_dir: str | Path) -> RunFiles:
    """Read a run directory's records.

    Raises:
        RunDirError: the folder has no ``config.yaml`` (not a tunesmith run), or a record is not
            valid JSON (naming the file and line).
    """
    import yaml

    from tunesmith.config.run_dir import RunDir
    from tunesmith.config.run_folders import existing_folder

    path = existing_folder(run_dir)
    run = RunDir(path)
    if not run.has_config():
        raise RunDirError(f"{path}: not a tunesmith run directory (no {RunDir.CONFIG})")
    config = yaml.safe_load(run.config_file.read_text(encoding="utf-8")) or {}
    files = RunFiles(path, config, _json(run.record_file) or {}, _jsonl(run.metrics_file),
                     _jsonl(run.resources_file), _json(run.eval_results_file))
    for result_file in sorted(path.glob("eval_*.json")):
        if result_file.name != RunDir.EVAL_RESULTS:
            files.evaluations[result_file.name] = _json(result_file) or {}
    return files


def _json(path: Path) -> Optional[dict[str, Any]]:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise RunDirError(f"{path}:{number}: invalid JSON ({err.msg})") from None
    return rows


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested config: ``{"train": {"lr": 0.001}}`` -> ``{"train.lr": 0.001}``.

    Empty sections stay as ``{}`` values so that every key the run had is listed.
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
