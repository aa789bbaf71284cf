"""A cache of tokenized datasets: a second run with the same inputs reads neither the data files
nor tokenizes, and gets memory-mapped Arrow tables back (no copy into Python lists).

An entry (``<cache>/tokenized/<key>/``) holds everything ``build_datasets`` returns before
packing: ``train/`` and ``eval/`` (``Dataset.save_to_disk``), and ``meta.json`` (counts, notes,
the format found, the held-out examples). The key hashes:

- the cache layout version and the tunesmith version (tokenizing code changes with it);
- the tokenizer (vocabulary, rules, special tokens, chat template) and the Jinja source of a
  named or file template;
- every ``data.*`` key that can change the rows (all but ``cache``, ``num_proc``, ``packing``,
  ``collator``, ``collator_args``), the seed and the task;
- the data itself. For local files, folders, globs and ``save_to_disk`` folders: each file's
  absolute path, size and modification time (nanoseconds), read with one ``stat`` per file, so a
  hit costs no reading. Editing a file changes its modification time; a change that keeps both
  size and modification time (a tool that restores the time stamp) is not seen: set
  ``data.cache=false`` or touch the file. For built-in, generated and hub datasets, which have no
  files to stat, and whenever code outside tunesmith shapes the examples (a registered row
  transform in ``data.transforms``, a registered data format), whose edits no file stamp shows,
  the examples are read and their content is hashed (without the file:line they came from, so
  moving data does not change the key).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from tunesmith.cache_dirs import atomic_folder, cache_root

logger = logging.getLogger(__name__)
CACHE_VERSION = 2  # bump when tokenization or the entry layout changes so old entries are not reused
# data.* keys that do not change the tokenized rows (packing is applied after the cache)
NOT_IN_KEY = ("cache", "num_proc", "packing", "collator", "collator_args")


def _stable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__type__": type(obj).__name__, **{k: _stable(v) for k, v in dataclasses.asdict(obj).items()}}
    if isinstance(obj, dict):
        return {str(k): _stable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_stable(v) for v in obj]
    return obj


# id(tokenizer) -> (tokenizer, cheap state, hash): serialising a tokenizer takes ~0.1 s, so a
# process asks once per tokenizer, and again only when its template, special tokens or size change.
_TOKENIZER_FINGERPRINTS: dict[int, tuple[Any, tuple[str, ...], str]] = {}


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of the tokenizer's vocabulary/rules, special tokens and chat template."""
    state = (str(tokenizer.chat_template), str(getattr(tokenizer, "padding_side", "")),
             json.dumps(_stable(getattr(tokenizer, "special_tokens_map", {}))), str(len(tokenizer)))
    known = _TOKENIZER_FINGERPRINTS.get(id(tokenizer))
    if known is not None and known[0] is tokenizer and known[1] == state:
        return known[2]
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:  # slow tokenizers: the vocabulary is what decides the ids
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    for part in state:
        digest.update(part.encode())
    _TOKENIZER_FINGERPRINTS[id(tokenizer)] = (tokenizer, state, digest.hexdigest())
    return digest.hexdigest()


def _example_state(example: Any) -> Any:
    """An example without ``where``: the same content read from another file or line is the same."""
    state = _stable(example)
    if isinstance(state, dict):
        state.pop("where", None)
    return state


def fingerprint(examples: list[Any], tokenizer: Any, settings: dict[str, Any]) -> str:
    """One key for (examples, tokenizer, settings); any change gives a new key (``where`` aside)."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    digest.update(tokenizer_fingerprint(tokenizer).encode())
    digest.update(json.dumps(_stable(settings), sort_keys=True).encode())
    for example in examples:
        digest.update(json.dumps(_example_state(example), sort_keys=True).encode())
    return digest.hexdigest()[:40]


def data_key(tokenizer: Any, settings: dict[str, Any], files: Optional[list[Any]] = None,
             examples: Optional[list[Any]] = None) -> str:
    """The key of an entry: settings (a JSON-able dict) with file stamps, or with examples."""
    from tunesmith import __version__

    parts = {"version": CACHE_VERSION, "tunesmith": __version__, "settings": settings, "files": files}
    if examples is None:
        digest = hashlib.sha256(f"v{CACHE_VERSION}".encode())
        digest.update(tokenizer_fingerprint(tokenizer).encode())
        digest.update(json.dumps(_stable(parts), sort_keys=True).encode())
        return digest.hexdigest()[:40]
    return fingerprint(examples, tokenizer, parts)


def settings_for_key(cfg: Any, seed: int, task: str, template_source: Optional[str]) -> dict[str, Any]:
    """The part of a resolved ``DataConfig`` (and run settings) that decides the rows."""
    data = {k: v for k, v in _stable(cfg).items() if k not in NOT_IN_KEY}
    return {"data": data, "seed": seed, "task": task, "template_source": template_source}


def cache_dir() -> Path:
    """Where tokenized datasets are cached: ``<tunesmith cache>/tokenized``."""
    return cache_root() / "tokenized"


def load_entry(key: str) -> Optional[tuple[Any, Optional[Any], dict[str, Any]]]:
    """(train, eval or None, meta) for ``key``, memory-mapped; None when absent or damaged."""
    folder = cache_dir() / key
    if not (folder / "meta.json").is_file():
        logger.debug("tokenized-data cache: no entry %s; the data is tokenized", key)
        return None
    import datasets

    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        train = datasets.load_from_disk(str(folder / "train"))
        held = datasets.load_from_disk(str(folder / "eval")) if meta.get("has_eval") else None
    except (OSError, ValueError, KeyError):  # a damaged entry is ignored and rebuilt
        logger.debug("tokenized-data cache: entry %s is damaged; it is rebuilt", key)
        return None
    logger.debug("tokenized-data cache: reusing entry %s (%s)", key, folder)
    return train, held, meta


def save_entry(key: str, train: Any, held: Optional[Any], meta: dict[str, Any]) -> Optional[tuple[Any, Optional[Any]]]:
    """Write atomically (a temporary folder renamed into place) and return the datasets read back
    memory-mapped; None when ``meta`` cannot be written as JSON (nothing is cached then)."""
    try:
        text = json.dumps({**meta, "has_eval": held is not None})
    except (TypeError, ValueError):  # examples carrying objects JSON cannot hold
        return None
    folder = cache_dir() / key
    with atomic_folder(folder) as tmp:
        train.save_to_disk(str(tmp / "train"))
        if held is not None:
            held.save_to_disk(str(tmp / "eval"))
        (tmp / "meta.json").write_text(text, encoding="utf-8")  # last: its presence marks a complete entry
    entry = load_entry(key)
    return None if entry is None else entry[:2]


@contextlib.contextmanager
def entry_lock(key: str, report_every_s: float = 30.0) -> Iterator[None]:
    """Hold the lock of entry ``key`` (``<cache>/tokenized/<key>.lock``, a ``filelock.FileLock``)
    for the block: one process prepares an entry while the others wait, then find it written.

    A waiting process logs how long it has waited every ``report_every_s`` seconds and never gives
    up on its own: the operating system releases the lock when its holder exits or crashes, and the
    holder releases it on an error, after which the next process tries (and reports its own error).
    No distributed timeout is involved.
    """
    import filelock

    path = cache_dir() / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path))
    start = time.monotonic()
    while True:
        try:
            lock.acquire(timeout=report_every_s)
            break
        except filelock.Timeout:
            logger.warning("process %d has waited %.0f s for another process preparing the same data "
                           "(lock %s); it goes on as soon as that one has written the tokenized-data cache",
                           os.getpid(), time.monotonic() - start, path)
    try:
        yield
    finally:
        lock.release()
