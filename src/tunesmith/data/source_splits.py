"""Splits of a folder or glob: which files belong to ``data.split`` (or ``data.eval_split_name``).

A file belongs to the split its file name or folder names say, read the way ``datasets``'
``data_files`` reads them: the word ``train``/``training``, ``validation``/``valid``/``val``/``dev``,
``test``/``testing``/``eval``/``evaluation`` (or the split asked for) between separators
(``-._``, space, digits), or a sharded name ``<split>-00000-of-00003``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from tunesmith.errors import DataError
from tunesmith.registry import did_you_mean


def _is_glob(spec: str) -> bool:
    return any(c in spec for c in "*?[")


def _split_words(name: str) -> list[str]:
    """``"train-00000-of-00002.parquet"`` -> ``["train", "of", "parquet"]``: words between the
    characters datasets treats as separators around a split keyword."""
    return [w for w in re.split(f"[{re.escape(NON_WORDS_CHARS)}]+", name.lower()) if w]


NON_WORDS_CHARS = "-._ 0123456789"
# Split names and the words that name them in file and folder names, as datasets' data_files reads them.
SPLIT_KEYWORDS = {"train": ("train", "training"), "validation": ("validation", "valid", "dev", "val"),
                  "test": ("test", "testing", "eval", "evaluation")}
_SHARD = re.compile(r"^(\w+?)-\d{5}-of-\d{5}")  # data/<split>-00000-of-00003.parquet


def split_of(relative: Path, wanted: str) -> Optional[str]:
    """The split a file's path names, looking at the file name first, then its folders:
    ``test.jsonl`` -> test, ``valid/part1.jsonl`` -> validation, ``data/dpo-00000-of-00002.parquet``
    -> dpo (a sharded name), ``notes.jsonl`` -> None. ``wanted`` (the split asked for) counts as a
    keyword of itself, so custom split names work too."""
    keywords = dict(SPLIT_KEYWORDS)
    keywords.setdefault(wanted.lower(), (wanted.lower(),))
    shard = _SHARD.match(relative.name)
    if shard:
        name = shard.group(1).lower()
        return next((split for split, words in keywords.items() if name in words), name)
    for part in reversed(relative.parts):
        words = set(_split_words(part))
        named = [split for split, aliases in keywords.items() if words & set(aliases)]
        if len(named) == 1:
            return named[0]
        if named:
            raise DataError(f"{relative}: the name says more than one split ({', '.join(named)}); rename it "
                            "so it names one")
    return None


def split_files(files: list[Path], root: Path, split: str, spec: str, key: str) -> list[Path]:
    """The files of ``split`` among a folder's or a glob's files.

    A file belongs to the split its name or folder names (``train.jsonl``, ``test/part-1.jsonl``,
    ``data/validation-00000-of-00001.parquet``; aliases as in datasets: ``dev``/``val`` are
    validation, ``eval`` is test). When no file names a split, all of them are one ``train``
    split. Asking for a split no file names is an error, as is mixing named and unnamed files.
    """
    named: dict[Path, Optional[str]] = {}
    for file in files:
        try:
            relative = file.relative_to(root)
        except ValueError:
            relative = Path(file.name)
        named[file] = split_of(relative, split)
    splits = sorted({s for s in named.values() if s is not None})
    if not splits:
        if split == "train":
            return files
        raise DataError(f"{key}: {split!r} is asked for (data.split / data.eval_split_name), but no file under "
                        f"{spec!r} names a split, so all {len(files)} files are the train split; name files or "
                        f"folders by split (such as {split}.jsonl or {split}/part-1.jsonl)")
    unnamed = [str(f.relative_to(root)) if f.is_relative_to(root) else f.name for f, s in named.items() if s is None]
    if unnamed:
        raise DataError(f"{key}: under {spec!r} some files name a split ({', '.join(splits)}) and some do not "
                        f"({', '.join(unnamed[:5])}); rename those, or set {key} to a glob that picks one split's "
                        "files")
    chosen = [f for f, s in named.items() if s == split.lower()]
    if not chosen:
        raise DataError(f"{key}: no file under {spec!r} is in the split {split!r}; the splits there are "
                        f"{', '.join(splits)}.{did_you_mean(split, splits)} Set data.split / data.eval_split_name "
                        "to one of them")
    return chosen


def glob_root(spec: str) -> str:
    """The folder part of a glob before its first wildcard: ``data/**/*.jsonl`` -> ``data``."""
    parts = Path(os.path.expanduser(spec)).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if _is_glob(p))]]
    return str(Path(*fixed)) if fixed else "."
