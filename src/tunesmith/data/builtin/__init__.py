"""Datasets the package ships or generates, registered by name (``data.train=arith``).

Users add their own in one file with ``register_dataset``::

    from tunesmith.data.builtin import register_dataset

    @register_dataset("colors", metric="exact_match", default_test_size=50)
    def build_colors(split, seed, n):
        return [{"instruction": "Name a warm color.", "output": "red", "answer": "red"}][:n]
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from typing import Callable, Literal

from tunesmith.data.handlers import QADataset, handler_builder, is_dataset_class
from tunesmith.errors import ConfigError, DataError
from tunesmith.registry import Registry, did_you_mean

# What kind of model the rows train; matches the non-auto values of ``model.task``.
DatasetTask = Literal["causal_lm", "seq2seq", "sequence_classification"]
Builder = Callable[[str, int, "int | None"], list[dict]]
# The held-out seed of tunesmith's own built-ins: the default train.seed, so a run with the
# default seed asks the same held-out rows as before the seed was fixed.
HELD_OUT_SEED = 42


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset produced by code. ``build(split, seed, n)`` returns plain rows (dicts)."""

    name: str
    build: Builder
    description: str
    splits: tuple[str, ...] = ("train", "test")
    metric: str = "exact_match"  # default evaluation for before/after comparisons
    default_train_size: int = 2000
    default_test_size: int = 200
    system_prompt: str | None = None  # used unless data.system_prompt is set
    task: DatasetTask = "causal_lm"
    format: str = "auto"  # the data.format its rows are written in; auto detects from the columns
    label_names: tuple[str, ...] = ()  # classification: the name of each label id, in id order
    split_note: str | None = None  # how the test split is kept apart from train (shown to the user)
    # The seed its test split is always drawn with, whatever train.seed is, so that runs with
    # different seeds are scored on the same held-out rows. Only for a dataset whose splits are
    # disjoint whatever seeds draw them (tunesmith's built-ins split by wording, entity or a hash of
    # the content); None: the test split is drawn with train.seed, like the train split.
    held_out_seed: int | None = None

    @property
    def row_format(self) -> str | None:
        """The format its rows are read in; None: detected from their columns (``format="auto"``, the
        ``data.format`` value this metadata is written in)."""
        return None if self.format == "auto" else self.format


def _adapt_handler(path: str, obj: object) -> BuiltinDataset:
    """A dataset named by dotted path: a ``BuiltinDataset``, a builder function, or a class.

    A Dataset-style class (``__getitem__`` and ``__len__``) is a handler (``tunesmith.data.handlers``):
    it gets the tokenizer and returns tokenized items. A function is called as
    ``fn(split, seed, n, **data.dataset_args)``; another class is instantiated
    with ``data.dataset_args`` and its instances are called as ``instance(split, seed, n)``. The
    metadata (``task``, ``metric``, ``format``, ``splits``, ...) is read from attributes of the same
    names when present.
    """
    if isinstance(obj, BuiltinDataset):
        return obj
    if is_dataset_class(obj):  # a Dataset-style handler that tokenizes its own items
        doc = (obj.__doc__ or "").strip().splitlines()
        handler = BuiltinDataset(name=path, build=handler_builder(obj), description=doc[0] if doc else path,
                                 splits=("train",), metric="perplexity", format="tokenized")
        return dataclasses.replace(handler, build=_checked(handler))
    if not callable(obj):
        raise ConfigError(f"data.train: '{path}' is a {type(obj).__name__}, not a dataset builder "
                          "(a function (split, seed, n) -> rows, or a class whose instances are)")
    meta = {f: getattr(obj, f) for f in _META_FIELDS if f != "description" and hasattr(obj, f)}
    for name in ("splits", "label_names"):
        if name in meta:
            meta[name] = tuple(meta[name])
    doc = (obj.__doc__ or "").strip().splitlines()
    build = _from_class(obj) if inspect.isclass(obj) else obj
    dataset = BuiltinDataset(name=path, build=build, description=doc[0] if doc else path, **meta)
    return dataclasses.replace(dataset, build=_checked(dataset))


def _from_class(cls: type) -> Builder:
    """``build(split, seed, n, **options)`` = ``cls(**options)(split, seed, n)``, with a signature
    that shows the constructor's parameters (so the options are checked against them)."""

    def build(split: str, seed: int, n: int, **options: object) -> list[dict]:
        return cls(**options)(split, seed, n)

    own = [p for p in list(inspect.signature(cls).parameters.values()) if p.kind != p.VAR_POSITIONAL]
    head = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("split", "seed", "n")]
    keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind != p.VAR_KEYWORD else p for p in own]
    build.__signature__ = inspect.Signature(head + keyword)  # type: ignore[attr-defined]
    build.__qualname__ = cls.__qualname__
    return build


# tunesmith passes (split, seed, n); data.dataset_args add keyword arguments.
BUILTIN_DATASETS: Registry[BuiltinDataset] = Registry("built-in dataset", key="data.train", provided=3,
                                                      adapt=_adapt_handler)


def register_builtin(dataset: BuiltinDataset) -> BuiltinDataset:
    """Register a ready ``BuiltinDataset`` under its own name (``register_dataset`` is the decorator form)."""
    return BUILTIN_DATASETS.register(dataset.name, dataset)


# Fields a user may pass to register_dataset; name and build come from the decorator itself.
_META_FIELDS = tuple(f.name for f in dataclasses.fields(BuiltinDataset) if f.name not in ("name", "build"))


def register_dataset(name: str, **meta) -> Callable[[Builder], Builder]:
    """Decorator: register ``fn(split, seed, n) -> list[dict]`` as built-in dataset ``name``.

    ``meta`` takes any ``BuiltinDataset`` field (``metric``, ``label_names``, ``format``, ...);
    ``description`` defaults to the first line of the function's docstring. ``n=None`` reaches the
    function as the default size of the split, and an unknown split fails before it is called.

    Example:
        ``@register_dataset("echo", default_train_size=3, default_test_size=1) def build_echo(split, seed, n): return [{"instruction": f"Say {i}.", "output": str(i)} for i in range(n)]; BUILTIN_DATASETS.get("echo").build("test", 0, None)`` -> ``[{'instruction': 'Say 0.', 'output': '0'}]``

    Raises:
        ConfigError: If ``name`` is already registered or a ``meta`` key is unknown.
    """
    unknown = sorted(set(meta) - set(_META_FIELDS))
    if unknown:
        hint = did_you_mean(unknown[0], _META_FIELDS)
        raise ConfigError(f"register_dataset('{name}'): unknown field '{unknown[0]}'.{hint} "
                          f"Allowed: {', '.join(_META_FIELDS)}")
    if "label_names" in meta:
        meta["label_names"] = tuple(meta["label_names"])
    if "splits" in meta:
        meta["splits"] = tuple(meta["splits"])
    seed = meta.get("held_out_seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"register_dataset('{name}'): held_out_seed={seed!r} is not allowed; give an integer "
                          "seed, or None to draw the test split with train.seed")

    def wrap(fn: Builder) -> Builder:
        doc = (fn.__doc__ or "").strip().splitlines()
        meta.setdefault("description", doc[0] if doc else f"user dataset {name}")
        dataset = BuiltinDataset(name=name, build=fn, **meta)
        register_builtin(dataclasses.replace(dataset, build=_checked(dataset)))
        return fn  # unchanged, so the user can still call it directly

    return wrap


def _checked(dataset: BuiltinDataset) -> Builder:
    """Wrap a user's builder: resolve the default size and check split, n and the rows."""
    fn = dataset.build

    def build(split: str, seed: int = 0, n: int | None = None, **options: object) -> list[dict]:
        if split not in dataset.splits:
            raise DataError(f"{dataset.name}: unknown split '{split}'; "
                            f"allowed splits: {', '.join(dataset.splits)}")
        if n is None:
            n = dataset.default_test_size if split == "test" else dataset.default_train_size
        rows = fn(split, seed, n, **options)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{dataset.name}: the builder must return a list of dicts (rows), "
                            f"got {type(rows).__name__}")
        return rows

    # Name, docstring and __wrapped__ of fn: options are checked against fn's own signature.
    return functools.update_wrapper(build, fn)


# The registry under the name Hydra-based toolkits give it: ``DATASET_REGISTRY["NAME"] = Handler``.
DATASET_REGISTRY = BUILTIN_DATASETS
DATASET_REGISTRY["QADataset"] = QADataset  # question / answer rows, tokenized by the handler

# Importing the modules registers them.
from tunesmith.data.builtin import (  # noqa: E402,F401
    arith,
    arith_pref,
    fictional_facts,
    instruct_mini,
    paraphrase,
    sentiment,
)
