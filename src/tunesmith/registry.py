"""A small name -> object registry used for every pluggable component.

Example:
    >>> DATASETS = Registry("dataset")
    >>> @DATASETS.register("arith")
    ... def build_arith(...): ...
    >>> DATASETS.get("arth")
    ConfigError: unknown dataset 'arth'. Did you mean 'arith'? Known: arith
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from tunesmith.errors import ConfigError

T = TypeVar("T")


def did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry(Generic[T]):
    """Maps names to components; unknown names fail with the known ones listed."""

    def __init__(self, kind: str, key: str | None = None) -> None:
        self.kind = kind
        self.key = key  # config key that selects from this registry, for error messages
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")``."""

        def add(item: T) -> T:
            if name in self._items and not overwrite and self._items[name] is not item:
                raise ConfigError(
                    f"a {self.kind} named '{name}' is already registered; "
                    f"pass overwrite=True to replace it"
                )
            self._items[name] = item
            return item

        if obj is not None:
            return add(obj)
        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        where = f"{self.key}: " if self.key else ""
        known = ", ".join(self.names()) or "(none registered)"
        return f"{where}unknown {self.kind} '{name}'.{did_you_mean(name, self.names())} Known: {known}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())


Factory = Callable[..., object]
