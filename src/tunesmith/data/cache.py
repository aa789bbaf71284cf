"""A cache of tokenized datasets, keyed by a fingerprint of the examples, the tokenizer and every
setting that changes token ids. A second run with the same inputs skips tokenizing."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from tunesmith.cache_dirs import atomic_folder, cache_root

CACHE_VERSION = 1  # bump when tokenization changes so old entries are not reused


def _stable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__type__": type(obj).__name__, **{k: _stable(v) for k, v in dataclasses.asdict(obj).items()}}
    if isinstance(obj, dict):
        return {str(k): _stable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_stable(v) for v in obj]
    return obj


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of the tokenizer's vocabulary/rules, special tokens and chat template."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:  # slow tokenizers: the vocabulary is what decides the ids
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(str(tokenizer.chat_template).encode())
    digest.update(json.dumps(_stable(getattr(tokenizer, "special_tokens_map", {}))).encode())
    digest.update(str(getattr(tokenizer, "padding_side", "")).encode())
    return digest.hexdigest()


def fingerprint(examples: list[Any], tokenizer: Any, settings: dict[str, Any]) -> str:
    """One key for (examples, tokenizer, settings); any change gives a new key."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    digest.update(tokenizer_fingerprint(tokenizer).encode())
    digest.update(json.dumps(_stable(settings), sort_keys=True).encode())
    for example in examples:
        digest.update(json.dumps(_stable(example), sort_keys=True).encode())
    return digest.hexdigest()[:40]


def cache_dir() -> Path:
    """Where tokenized datasets are cached: ``<tunesmith cache>/tokenized``."""
    return cache_root() / "tokenized"


def load_cached(key: str) -> Optional[tuple[Any, dict[str, Any]]]:
    """(datasets.Dataset, stats dict) for ``key``, or None when absent or incomplete."""
    folder = cache_dir() / key
    if not (folder / "stats.json").is_file():
        return None
    import datasets

    try:
        dataset = datasets.load_from_disk(str(folder / "dataset"))
        stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # a damaged entry is ignored and rebuilt
        return None
    return dataset, stats


def save_cached(key: str, dataset: Any, stats: dict[str, Any]) -> Path:
    """Write atomically: a temporary folder renamed into place (stats.json last)."""
    folder = cache_dir() / key
    with atomic_folder(folder) as tmp:
        dataset.save_to_disk(str(tmp / "dataset"))
        (tmp / "stats.json").write_text(json.dumps(stats), encoding="utf-8")
    return folder
