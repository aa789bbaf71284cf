"""A small name -> object registry used for every pluggable component.

A config names a component in one of two ways:

- a registered name: ``train.trainer=sft``, ``data.train=arith``;
- a dotted path to the user's own code, ``package.module:attribute``
  (``data.preprocessor=mypkg.prep:Lowercase``), imported when the config is checked.

Arguments for the component come from the config key ``<key>_args`` (``data.preprocessor_args``)
and are checked against the component's signature before anything heavy is loaded.

Example:
    >>> DATASETS = Registry("dataset")
    >>> @DATASETS.register("arith")
    ... def build_arith(split, seed, n): ...
    >>> DATASETS.get("arth")
    Traceback (most recent call last):
    tunesmith.errors.ConfigError: unknown dataset 'arth'. Did you mean 'arith'? Known: arith...
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import os
import re
import sys
from typing import Any, Callable, Generic, Iterator, Mapping, Optional, TypeVar, Union

from tunesmith.errors import ConfigError

T = TypeVar("T")

# ``package.module:Attribute`` (the attribute may be nested: ``module:Outer.inner``).
_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")

# What tunesmith itself passes to a component: the number of leading positional arguments, or the
# names of the keyword arguments. A config's ``<key>_args`` may not set these.
Provided = Union[int, tuple[str, ...]]


def did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def is_dotted_path(name: object) -> bool:
    """True for ``"package.module:Attribute"``, the form that names a user's own code.

    Example:
        >>> is_dotted_path("mypkg.data:MyDataset"), is_dotted_path("arith"), is_dotted_path("a/b.json")
        (True, False, False)
    """
    return isinstance(name, str) and bool(_DOTTED.match(name))


def import_dotted(path: str, key: Optional[str] = None) -> Any:
    """Import ``"package.module:Attribute"`` and return the attribute.

    Raises:
        ConfigError: naming ``key``, when the module cannot be imported or lacks the attribute.
    """
    where = f"{key}: " if key else ""
    module_name, _, attr_path = path.partition(":")
    try:
        module = _import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{where}cannot import module '{module_name}' for '{path}' ({err}). The module must "
                          "be importable: installed, or in the working directory / on PYTHONPATH") from None
    obj: Any = module
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(obj) if not n.startswith("_"))
            raise ConfigError(f"{where}'{module_name}' has no attribute '{attr_path}'."
                              f"{did_you_mean(part, public)}")
        obj = getattr(obj, part)
    return obj


def _import_module(name: str) -> Any:
    """Import ``name``; a module in the working directory is found too (as ``python -m`` would),
    searched after everything else so it cannot shadow an installed package."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        cwd = os.getcwd()
        top = name.split(".")[0]
        if err.name != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        try:
            return importlib.import_module(name)
        except ImportError:
            sys.path.remove(cwd)
            raise


def check_arguments(obj: Any, args: Mapping[str, Any], key: str, provided: Provided = (),
                    args_key: Optional[str] = None) -> None:
    """Check config arguments against ``obj``'s signature, before anything is called.

    Args:
        obj: the function or class the arguments are for.
        args: the arguments from the config (``<key>_args``).
        key: the config key that names ``obj``, for error messages.
        provided: what tunesmith passes itself (leading positional count, or keyword names).
        args_key: the config key holding ``args`` (default ``<key>_args``).

    Raises:
        ConfigError: an unknown argument (with the allowed ones listed), one that tunesmith passes
            itself, or a missing required one.

    Example:
        >>> def build(split, seed, n, topic="math"): ...
        >>> check_arguments(build, {"topik": "x"}, "data.train", provided=3)
        Traceback (most recent call last):
        tunesmith.errors.ConfigError: data.train_args: 'topik' is not a parameter of build(split, seed, n, topic='math')...
    """
    args_key = args_key or f"{key}_args"
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # some builtins have no signature to check against
        return
    params = list(signature.parameters.values())
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params)
    if isinstance(provided, int):
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        passed = {p.name for p in positional[:provided]}
    else:
        passed = set(provided)
    settable = [p.name for p in named if p.name not in passed]
    label = f"{getattr(obj, '__qualname__', obj)}{signature}"
    for name in args:
        if name in passed:
            raise ConfigError(f"{args_key}: '{name}' is passed by tunesmith to {label}; remove it from {args_key}")
        if name not in settable and not takes_any:
            allowed = ", ".join(settable) or "(none)"
            raise ConfigError(f"{args_key}: '{name}' is not a parameter of {label}."
                              f"{did_you_mean(name, settable)} Allowed: {allowed}")
    missing = [p.name for p in params
               if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and p.name not in args and p.name not in passed]
    if missing:
        raise ConfigError(f"{args_key}: {label} needs {', '.join(repr(m) for m in missing)}; "
                          f"set {args_key}.{missing[0]}=...")


class Registry(Generic[T]):
    """Maps names to components; unknown names fail with the known ones listed.

    Args:
        kind: what the entries are, for messages ("trainer", "collator", ...).
        key: the config key that selects from this registry, for messages (``train.trainer``).
        instantiate: entries are classes that ``build`` instantiates with the config's arguments
            (preprocessors, inference handlers, callbacks, metrics); otherwise ``build`` binds the
            arguments to the function, which tunesmith calls later (factories, builders).
        provided: what tunesmith passes to an entry itself (see ``check_arguments``).
        adapt: turns an object imported by dotted path into an entry (e.g. wraps a function).
    """

    def __init__(self, kind: str, key: str | None = None, *, instantiate: bool = False, provided: Provided = (),
                 adapt: Optional[Callable[[str, Any], T]] = None) -> None:
        self.kind = kind
        self.key = key
        self.instantiate = instantiate
        self.provided = provided
        self._adapt = adapt
        self._items: dict[str, T] = {}
        self._given: dict[str, Any] = {}  # name -> the object registered, before adapt
        self._imported: dict[str, T] = {}  # dotted paths already imported
        self._meta: dict[str, Any] = {}  # name -> what was registered about the entry (``meta``)

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False, meta: Any = None):
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")``.

        A registry with ``adapt`` stores ``adapt(name, obj)`` (e.g. a dataset class made into a
        dataset entry); the decorator form returns ``obj`` itself either way. ``meta`` is what the
        registry keeps about the entry (a trainer's traits), read back with ``meta(name)``.

        Raises:
            ConfigError: ``name`` is taken by another object and ``overwrite`` is False.
        """
        if not isinstance(name, str) or not name or ":" in name:
            raise ConfigError(f"{self.kind} name {name!r}: expected a non-empty name without ':' "
                              "(':' marks a dotted path to code)")

        def add(item: T) -> T:
            same = self._items.get(name) is item or self._given.get(name) is item
            if name in self._items and not overwrite and not same:
                raise ConfigError(
                    f"a {self.kind} named '{name}' is already registered; "
                    f"pass overwrite=True to replace it"
                )
            if not same:
                self._items[name] = self._adapt(name, item) if self._adapt else item
                self._given[name] = item
                self._meta.pop(name, None)
            if meta is not None:
                self._meta[name] = meta
            return item

        if obj is not None:
            add(obj)
            return self._items[name]
        return add

    def get(self, name: str) -> T:
        """The entry registered as ``name``, or the object a ``module:attr`` dotted path names."""
        if name in self._items:
            return self._items[name]
        if is_dotted_path(name):
            if name not in self._imported:
                obj = import_dotted(name, self.key)
                self._imported[name] = self._adapt(name, obj) if self._adapt else obj
            return self._imported[name]
        raise ConfigError(self.unknown_message(name))

    def meta(self, name: str) -> Any:
        """What was registered about ``name`` (``register(..., meta=...)``); None when nothing was."""
        return self._meta.get(name)

    def check(self, name: str, args: Optional[Mapping[str, Any]] = None, args_key: Optional[str] = None) -> T:
        """``get(name)`` and check ``args`` against its signature; returns the entry."""
        entry = self.get(name)
        check_arguments(self._callable(entry), dict(args or {}), self.key or self.kind, self.provided, args_key)
        return entry

    def build(self, name: str, args: Optional[Mapping[str, Any]] = None, args_key: Optional[str] = None,
              supplied: Optional[Mapping[str, Any]] = None) -> Any:
        """The component for ``name`` with the config's ``args``: a class is instantiated with
        them, a function gets them bound as keyword arguments (``functools.partial``).
        ``supplied`` holds values of ``provided`` names, passed to a class that accepts them.

        Example: ``PREPROCESSORS.build("mypkg.prep:Lowercase", {"keep_case_for": ["DNA"]})`` ->
        ``<mypkg.prep.Lowercase object at ...>``.
        """
        entry = self.check(name, args, args_key)
        args = dict(args or {})
        if self.instantiate and inspect.isclass(entry):
            accepted = inspect.signature(entry).parameters
            extra = {k: v for k, v in (supplied or {}).items()
                     if k in accepted or any(p.kind == p.VAR_KEYWORD for p in accepted.values())}
            return entry(**extra, **args)
        return functools.partial(entry, **args) if args else entry

    def _callable(self, entry: Any) -> Any:
        """What the arguments are checked against: the entry, or the function it wraps."""
        return getattr(entry, "build", entry) if not callable(entry) else entry

    def unknown_message(self, name: str) -> str:
        """The error for an unknown ``name``: the config key, a suggestion and the known names."""
        where = f"{self.key}: " if self.key else ""
        known = ", ".join(self.names()) or "(none registered)"
        return (f"{where}unknown {self.kind} '{name}'.{did_you_mean(name, self.names())} Known: {known}; "
                "or name your own as 'package.module:attribute'")

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def remove(self, name: str) -> None:
        """Forget the entry registered as ``name`` (unknown names raise, as in ``get``)."""
        if name not in self._items:
            raise ConfigError(self.unknown_message(name))
        del self._items[name]
        self._given.pop(name, None)
        self._meta.pop(name, None)

    def __setitem__(self, name: str, obj: T) -> None:
        """``REGISTRY["name"] = obj``: ``register(name, obj)`` written as a dict assignment."""
        self.register(name, obj)

    def __getitem__(self, name: str) -> T:
        """``REGISTRY["name"]``: the same as ``get(name)``."""
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs, sorted by name."""
        return sorted(self._items.items())

