"""Update a ``TrainConfig`` from Python with dotted keys, section dicts or familiar aliases.

Values go through the same ``convert`` / ``build_config`` / ``check_values`` as config files, so
``cfg.update_config({"lr": "5e-4"})`` and ``tunesmith train train.lr=5e-4`` agree exactly.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from tunesmith.config.aliases import ALIASES
from tunesmith.config.lengths import EPOCHS, MAX_STEPS, length_origin, say_notes, set_length_origin, settle_length
from tunesmith.config.schema import TrainConfig
from tunesmith.config.validate import build_config, check_values, convert
from tunesmith.errors import ConfigError


def schema_keys(cls: type = TrainConfig, prefix: str = "") -> dict[str, Any]:
    """Every dotted key of ``cls`` (sections included) mapped to its type.

    Example:
        >>> schema_keys()["train.lr"], schema_keys()["peft.quantization.quant_type"] is not None
        (<class 'float'>, True)
    """
    keys: dict[str, Any] = {}
    for name, tp in typing.get_type_hints(cls).items():
        keys[prefix + name] = tp
        if dataclasses.is_dataclass(tp):
            keys.update(schema_keys(tp, f"{prefix}{name}."))
    return keys


def update_config(cfg: TrainConfig, updates: dict[str, Any], source: str = "update_config") -> TrainConfig:
    """Apply ``updates`` to ``cfg`` in place after checking them all; on any error ``cfg`` is unchanged.

    A length given here (epochs or max_steps) replaces the config's length, as described in
    ``tunesmith.config.lengths``; ``source`` names the caller in the messages about it.

    Example:
        >>> cfg = update_config(TrainConfig(), {"lr": 5e-4, "peft.r": 8, "train": {"seed": 1}})
        >>> cfg.train.lr, cfg.peft.r, cfg.train.seed
        (0.0005, 8, 1)
    """
    chosen = check_updates(updates)
    notes: list[tuple[int, str]] = []  # said once the updated config is valid
    lengths = settle_length(cfg.train.epochs, cfg.train.max_steps, length_origin(cfg),
                            {k: chosen[k][2] for k in (EPOCHS, MAX_STEPS) if k in chosen}, source, notes)
    for dotted, value in lengths.items():
        chosen.setdefault(dotted, (dotted, value, value))

    # Validate a full copy first, so a bad value (or a bad combination) never half-applies.
    merged = dataclasses.asdict(cfg)
    for dotted, (_, value, _) in chosen.items():
        *sections, leaf = dotted.split(".")
        node = merged
        for section in sections:
            node = node[section]
        node[leaf] = value
    _assign(cfg, check_values(build_config(merged)))
    if lengths:
        set_length_origin(cfg, source)
    say_notes(notes)
    return cfg


def check_updates(updates: dict[str, Any]) -> dict[str, tuple[str, Any, Any]]:
    """Check every key and value of an ``update_config`` dict without applying it.

    Returns ``{dotted key: (key as given, value, converted value)}``.

    Example:
        >>> check_updates({"lr": "5e-4"})
        {'train.lr': ('lr', '5e-4', 0.0005)}
    """
    if not isinstance(updates, dict):
        raise ConfigError(f"update_config: expected a dict of keys to values, got {updates!r}")
    types = schema_keys()
    chosen: dict[str, tuple[str, Any, Any]] = {}
    for given, dotted, value in _flatten(updates, "", types):
        converted = convert(value, types[dotted], dotted)
        if dotted in chosen and chosen[dotted][2] != converted:
            first, first_value, _ = chosen[dotted]
            raise ConfigError(
                f"{dotted}: set twice with different values: {first!r}={first_value!r} and "
                f"{given!r}={value!r}; keep one of them"
            )
        chosen[dotted] = (given, value, converted)
    return chosen


def disagreements(earlier: dict[str, Any], later: dict[str, Any]) -> list[str]:
    """Keys two ``update_config`` dicts both set to different values, described for a warning.

    Example:
        >>> disagreements({"lr": 1e-4}, {"train.lr": 2e-4})
        ['train.lr: lr=0.0001 and train.lr=0.0002']
    """
    first, second = check_updates(earlier), check_updates(later)
    return [f"{key}: {first[key][0]}={first[key][1]!r} and {second[key][0]}={second[key][1]!r}"
            for key in first if key in second and first[key][2] != second[key][2]]


def _flatten(updates: dict[str, Any], prefix: str, types: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """``(key as given, dotted key, value)`` for every leaf; section dicts are opened up."""
    out: list[tuple[str, str, Any]] = []
    for key, value in updates.items():
        given = f"{prefix}{key}"
        if not isinstance(key, str):
            raise ConfigError(f"{given!r}: config keys are strings, e.g. 'train.lr'")
        # A section given a dict is opened up; `model="gpt2"` is the alias for model.name_or_path.
        section = given in types and dataclasses.is_dataclass(types[given])
        if section and isinstance(value, types[given]):
            value = dataclasses.asdict(value)  # a whole section object sets each of its fields
        if section and isinstance(value, dict):
            out.extend(_flatten(value, f"{given}.", types))
        elif given in types and not section:
            out.append((given, given, value))
        elif not prefix and given in ALIASES:
            out.append((given, ALIASES[given], value))
        elif section:
            raise ConfigError(
                f"{given}: a section takes a dict of its keys, got {value!r}; e.g. "
                f"{{{given!r}: {{...}}}}, or pick a packaged option with load_config(overrides=['{given}=...'])"
            )
        else:
            raise ConfigError(f"{given}: unknown config key.{_suggest(given, types)}")
    return out


def _suggest(key: str, types: dict[str, Any]) -> str:
    """A did-you-mean over every dotted key and alias, e.g. " Did you mean 'learning_rate' (train.lr)?"."""
    leaf = key.rsplit(".", 1)[-1]
    if "." in key and leaf in ALIASES:  # train.learning_rate: the alias only works at the top level
        return f" Did you mean '{ALIASES[leaf]}'?"
    close = difflib.get_close_matches(key, [*types, *ALIASES], n=1, cutoff=0.6)
    if not close:
        return " Use a dotted key such as 'train.lr' or an alias such as 'lr', 'batch_size', 'r'."
    name = close[0]
    target = f" ({ALIASES[name]})" if name in ALIASES and ALIASES[name] != name else ""
    return f" Did you mean '{name}'{target}?"


def _assign(dst: Any, src: Any) -> None:
    """Copy ``src`` into ``dst`` field by field, keeping section objects so references stay live."""
    for f in dataclasses.fields(dst):
        new, old = getattr(src, f.name), getattr(dst, f.name)
        if dataclasses.is_dataclass(old) and type(old) is type(new):
            _assign(old, new)
        else:
            setattr(dst, f.name, new)
