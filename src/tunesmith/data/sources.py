"""Sources: where raw rows come from. Each row travels with ``where`` (file:line) for errors.

``data.train`` may be a built-in dataset name (``arith``), a local JSON / JSONL file, or a hub
dataset name (loaded with ``datasets.load_dataset``; offline it fails with a clear message).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.data.builtin import BUILTIN_DATASETS
from tunesmith.errors import DataError
from tunesmith.registry import did_you_mean

Row = tuple[dict[str, Any], str]  # (columns, "file:line")
LOCAL_SUFFIXES = (".jsonl", ".json")


def is_builtin(spec: str) -> bool:
    return spec in BUILTIN_DATASETS


def check_source(spec: str, key: str) -> None:
    """Fail fast (before any model is loaded) on a dataset that cannot be right."""
    if is_builtin(spec):
        return
    path = Path(spec).expanduser()
    if path.suffix in LOCAL_SUFFIXES or spec.startswith((".", "/", "~")):
        if not path.is_file():
            raise DataError(f"{key}: file {spec!r} does not exist")
        if path.suffix not in LOCAL_SUFFIXES:
            raise DataError(f"{key}: {spec!r} has suffix {path.suffix!r}; supported: {', '.join(LOCAL_SUFFIXES)}")
        return
    hint = did_you_mean(spec, BUILTIN_DATASETS.names())
    if hint and "/" not in spec:
        raise DataError(f"{key}: {spec!r} is not a built-in dataset or a local file.{hint} "
                        f"Built-in: {', '.join(BUILTIN_DATASETS.names())}")


def load_rows(spec: str, split: str = "train", seed: int = 0, key: str = "data.train") -> list[Row]:
    """Rows of ``spec``'s ``split`` (built-in datasets have train and test splits)."""
    check_source(spec, key)
    if is_builtin(spec):
        dataset = BUILTIN_DATASETS.get(spec)
        return [(row, f"{spec}[{split}]:{i}") for i, row in enumerate(dataset.build(split, seed, None))]
    path = Path(spec).expanduser()
    if path.is_file():
        return read_json_rows(path)
    return load_hub_rows(spec, split, key)


def read_json_rows(path: Path) -> list[Row]:
    """JSONL (one object per line; blank lines skipped) or a JSON list of objects."""
    text = path.read_text(encoding="utf-8")
    rows: list[Row] = []
    if path.suffix == ".jsonl":
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((json.loads(line), f"{path}:{lineno}"))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of objects (or JSONL), got {type(data).__name__}")
        rows = [(row, f"{path}: item {i}") for i, row in enumerate(data)]
    if not rows:
        raise DataError(f"{path}: the file holds no examples")
    return rows


def load_hub_rows(name: str, split: str, key: str) -> list[Row]:
    """A hub dataset through ``datasets.load_dataset`` (the local cache when offline)."""
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as err:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
        raise DataError(
            f"{key}: cannot load {name!r}: it is not a built-in dataset ({', '.join(BUILTIN_DATASETS.names())}) "
            "or a local file, and loading it from the Hugging Face hub failed (no network, or not in "
            f"the local datasets cache). ({type(err).__name__}: {str(err)[:300]})"
        ) from err
    return [(dict(row), f"{name}[{split}]:{i}") for i, row in enumerate(ds)]
