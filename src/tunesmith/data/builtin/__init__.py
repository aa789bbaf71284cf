"""Datasets the package ships or generates, registered by name (``data.train=arith``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tunesmith.registry import Registry


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset produced by code. ``build(split, seed, n)`` returns plain rows (dicts)."""

    name: str
    build: Callable[[str, int, int | None], list[dict]]
    description: str
    splits: tuple[str, ...] = ("train", "test")
    metric: str = "exact_match"  # default evaluation for before/after comparisons
    default_train_size: int = 2000
    default_test_size: int = 200
    system_prompt: str | None = None  # used unless data.system_prompt is set


BUILTIN_DATASETS: Registry[BuiltinDataset] = Registry("built-in dataset", key="data.train")


def register_builtin(dataset: BuiltinDataset) -> BuiltinDataset:
    return BUILTIN_DATASETS.register(dataset.name, dataset)


# Importing the modules registers them.
from tunesmith.data.builtin import arith  # noqa: E402,F401
