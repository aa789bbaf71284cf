"""Seeded, deterministic list transforms of the data pipeline: row augmentation, dedupe, sample, mix.

Where each runs:

- ``apply_row_transforms`` works on **raw rows** (``(dict, where)`` pairs from ``sources.load_rows``),
  before formats parse them: ``data.transforms``.
- ``dedupe``, ``sample`` and ``mix`` are generic over any items; the pipeline applies them to
  **canonical examples** (``Conversation`` ...): ``data.dedupe``, ``data.max_samples``, ``data.mix``.

The same inputs and seed always give the same output, in the same order.
"""

from __future__ import annotations

import dataclasses
import json
import random
import warnings
from typing import Any, Callable, Hashable, Optional, Sequence, TypeVar, Union

from tunesmith.errors import ConfigError, DataError
from tunesmith.registry import Registry

T = TypeVar("T")
Row = tuple[dict[str, Any], str]  # (columns, where), as sources.load_rows returns
RowTransform = Callable[[dict[str, Any], random.Random], Union[dict[str, Any], list[dict[str, Any]], None]]

ROW_TRANSFORMS: Registry[RowTransform] = Registry("row transform", key="data.transforms")


def register_row_transform(name: str):
    """Decorator: ``@register_row_transform("strip_whitespace")`` on ``fn(row, rng)``.

    The function gets a shallow copy of one row and a seeded ``random.Random``; it returns the new
    row, a list of rows (one row becomes several) or None (the row is dropped).
    """
    return ROW_TRANSFORMS.register(name)


def check_row_transforms(names: Sequence[str]) -> list[RowTransform]:
    """Resolve every name now (unknown ones fail with a did-you-mean), before any data is read."""
    return [ROW_TRANSFORMS.get(name) for name in names]


def apply_row_transforms(rows: Sequence[Row], names: Sequence[str], seed: int,
                         rng: Optional[random.Random] = None) -> list[Row]:
    """Apply the named row transforms in order; every output row keeps its input row's ``where``.

    One ``random.Random(seed)`` is shared by all rows in order, so the result depends only on the
    rows, the names and the seed. ``rng`` (instead of ``seed``) carries that generator over from
    an earlier call, so rows transformed in pieces (a stream) get what one call on all of them gives.

    Example:
        >>> apply_row_transforms([({"text": "  Hi "}, "d.txt:1")], ["strip_whitespace"], seed=0)
        [({'text': 'Hi'}, 'd.txt:1')]
    """
    fns = check_row_transforms(names)
    if not fns:
        return list(rows)
    rng = random.Random(seed) if rng is None else rng
    out: list[Row] = []
    for row, where in rows:
        current = [row]
        for name, fn in zip(names, fns):
            current = [new for r in current for new in _as_rows(fn(dict(r), rng), name, where)]
        out.extend((r, where) for r in current)
    return out


def _as_rows(result: Any, name: str, where: str) -> list[dict[str, Any]]:
    if result is None:
        return []
    if isinstance(result, dict):
        return [result]
    if isinstance(result, list) and all(isinstance(r, dict) for r in result):
        return result
    raise ConfigError(f"data.transforms: row transform '{name}' returned {type(result).__name__} for the row "
                      f"at {where}; a row transform returns a dict, a list of dicts or None")


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """``fn`` on every string, also inside lists and dicts (e.g. the ``content`` of ``messages``)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    return value


@register_row_transform("strip_whitespace")
def strip_whitespace(row: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Strip leading and trailing whitespace from every string, nested ones included.

    Example:
        >>> strip_whitespace({"q": " 2+2 \\n", "n": 3}, random.Random(0))
        {'q': '2+2', 'n': 3}
    """
    return _map_strings(row, str.strip)


@register_row_transform("lowercase_text")
def lowercase_text(row: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Lowercase every string, nested ones included (for case-insensitive tasks).

    Example:
        >>> lowercase_text({"text": "Hello World"}, random.Random(0))
        {'text': 'hello world'}
    """
    return _map_strings(row, str.lower)


@register_row_transform("drop_empty")
def drop_empty(row: dict[str, Any], rng: random.Random) -> Optional[dict[str, Any]]:
    """Drop a row in which every column is None, blank text or an empty list.

    Example:
        >>> drop_empty({"instruction": " ", "output": None}, random.Random(0)) is None
        True
    """

    def blank(value: Any) -> bool:
        return value is None or (isinstance(value, str) and not value.strip()) or value in ([], {})

    return None if all(blank(v) for v in row.values()) else row


def content_key(item: Any) -> str:
    """A key for ``dedupe`` that ignores where an item came from (its ``where`` field or key).

    Example:
        >>> content_key({"q": "2+2", "a": "4"}) == content_key({"a": "4", "q": "2+2"})
        True
    """
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        item = dataclasses.asdict(item)
    if isinstance(item, dict):
        item = {k: v for k, v in item.items() if k != "where"}
    return json.dumps(item, sort_keys=True, ensure_ascii=False, default=str)


def dedupe(items: Sequence[T], key_fn: Callable[[T], Hashable] = content_key) -> tuple[list[T], int]:
    """Remove exact duplicates (same ``key_fn``), keeping the first of each; returns (kept, n_removed).

    Example:
        >>> dedupe([{"q": "a"}, {"q": "b"}, {"q": "a"}])
        ([{'q': 'a'}, {'q': 'b'}], 1)
    """
    seen: set[Hashable] = set()
    kept: list[T] = []
    for item in items:
        key = key_fn(item)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept, len(items) - len(kept)


def sample(items: Sequence[T], max_samples: Optional[int], seed: int) -> list[T]:
    """A seeded shuffle of ``items``, then the first ``max_samples`` (all when None).

    A smaller cap with the same seed gives a prefix of a larger one, so subsets nest.

    Example:
        >>> sample([1, 2, 3, 4, 5], 2, seed=0)   # same list and seed -> same result every run
        [3, 2]
    """
    if max_samples is not None and (isinstance(max_samples, bool) or max_samples < 0):
        raise ConfigError(f"data.max_samples: must be a non-negative number or null, got {max_samples!r}")
    order = list(items)
    random.Random(seed).shuffle(order)
    return order if max_samples is None else order[:max_samples]


def mix_counts(sizes: Sequence[int], weights: Sequence[float], total: Optional[int]) -> list[int]:
    """How many items each source contributes to a mixture.

    With ``total`` None the first source is used once in full and source i contributes
    ``len(first) * weight_i / weight_0``; otherwise ``total`` is split by weight (largest
    remainders get the leftover items, so the counts sum to ``total`` exactly).

    Example:
        >>> mix_counts([100, 10], [3.0, 1.0], None), mix_counts([100, 10], [3.0, 1.0], 10)
        ([100, 33], [8, 2])
    """
    if len(sizes) != len(weights) or not sizes:
        raise ConfigError(f"data.mix: {len(sizes)} sources but {len(weights)} weights")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"data.mix: weights must be >= 0 with a positive sum, got {list(weights)}")
    if total is None:
        if weights[0] <= 0:
            raise ConfigError("data.mix: the first source needs a positive weight when no total is given")
        return [sizes[0]] + [round(sizes[0] * w / weights[0]) for w in weights[1:]]
    if total < 0:
        raise ConfigError(f"data.mix: the total must be >= 0, got {total}")
    shares = [total * w / sum(weights) for w in weights]
    counts = [int(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def mix(sources: Sequence[Sequence[T]], weights: Sequence[float], total: Optional[int], seed: int,
        names: Optional[Sequence[str]] = None) -> list[T]:
    """A weighted mixture of several sources, shuffled together.

    The number drawn from each source follows ``mix_counts``. A source is drawn from without
    replacement while its items last; when its weight asks for more, further seeded passes over
    it repeat items (each item at most once more than any other), and a ``UserWarning`` says how
    many repeats there are.

    Example (warning ``data.mix: source 1 has 2 examples but its weight asks for 4; 2 are repeats``):
        >>> mix([["a1", "a2", "a3", "a4"], ["b1", "b2"]], [1.0, 1.0], total=None, seed=0)
        ['b2', 'a1', 'b1', 'a2', 'a3', 'a4', 'b1', 'b2']
    """
    labels = list(names) if names is not None else [f"source {i}" for i in range(len(sources))]
    counts = mix_counts([len(s) for s in sources], weights, total)
    for label, items, n, weight in zip(labels, sources, counts, weights):
        if n and not items:
            raise DataError(f"data.mix: {label} holds no examples but has weight {weight}")
    mixed: list[T] = []
    for i, (items, n) in enumerate(zip(sources, counts)):
        # One generator per source (seeded by position) keeps a source's draw independent of the others.
        rng = random.Random(seed * 1_000_003 + i)
        drawn: list[T] = []
        while len(drawn) < n:
            order = list(items)
            rng.shuffle(order)
            drawn.extend(order[: n - len(drawn)])
        if n > len(items):
            warnings.warn(f"data.mix: {labels[i]} has {len(items)} examples but its weight asks for {n}; "
                          f"{n - len(items)} are repeats", UserWarning, stacklevel=2)
        mixed.extend(drawn)
    random.Random(seed).shuffle(mixed)
    return mixed
