"""Build a run's config: packaged Hydra config groups, then a user YAML file, then ``key=value``
overrides, in that order of precedence (later wins).

Hydra's compose API is used (never ``@hydra.main``), so the working directory never changes.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable

from tunesmith.config.lengths import EPOCHS, MAX_STEPS, PACKAGED, say_notes, set_length_origin, settle_length
from tunesmith.config.paths import check_confined, check_switch_not_in_file
from tunesmith.config.schema import TrainConfig
from tunesmith.config.validate import build_config, check_values
from tunesmith.errors import ConfigError
from tunesmith.registry import did_you_mean

CONFIG_MODULE = "tunesmith.config.configs"
GROUPS = ("model", "data", "peft", "train")
# A group given a value that is not one of its packaged options means this key instead:
# `model=./my-model` is `model.name_or_path=./my-model`, `data=rows.jsonl` is `data.train=rows.jsonl`.
GROUP_FALLBACK_KEY = {"model": "name_or_path", "data": "train"}


def group_options(group: str) -> list[str]:
    """The packaged option names of a config group, e.g. ``['dora', 'full', 'lora']``."""
    folder = Path(__file__).parent / "configs" / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_config(
    config_file: str | os.PathLike | None = None, overrides: Iterable[str] = ()
) -> TrainConfig:
    """Compose the config and check every key and value; nothing heavy is loaded."""
    user = _read_yaml(config_file) if config_file else {}
    user, shape_keys = _user_shapes(user, str(config_file)) if config_file else ({}, {})
    parsed = parse_overrides(list(overrides))
    if config_file:
        check_switch_not_in_file(user, config_file)

    selections: dict[str, str] = {}
    values: list[tuple[str, Any]] = []
    source = f" (in {config_file})" if config_file else ""
    for key, value in user.items():
        if key in GROUPS and not isinstance(value, dict):
            _select(key, value, selections, values, source)
        elif key == "defaults":
            raise ConfigError(
                f"defaults{source}: a defaults list is not read from user files; "
                "name a packaged option directly, e.g. 'model: smollm2-135m-instruct'"
            )
    for key, value in parsed:
        if key in GROUPS and not isinstance(value, dict):
            _select(key, value, selections, values, " (on the command line)")
        else:
            values.append((key, value))

    merged = compose_groups(selections)
    if _classifier_recipe(selections, merged, user, parsed):
        merged = compose_groups(selections)
    origin = PACKAGED
    length_notes: list[tuple[int, str]] = []  # said once the config is valid (a refused one shows its error alone)
    yaml_items = [(k, v) for k, v in user.items() if k == "train" and isinstance(v, dict)]
    try:
        yaml_lengths = _lengths_given(merged, yaml_items + list(shape_keys.items()), origin,
                                      f"the config file {config_file}", length_notes)
    except ConfigError as err:  # a length that is not a number: name the file, as for every other key
        if config_file and source not in str(err):
            raise ConfigError(f"{err}{source}") from None
        raise
    for key, value in user.items():
        if key in GROUPS and not isinstance(value, dict):
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            _deep_update(merged[key], value)
        else:
            merged[key] = value
    for key, value in shape_keys.items():  # model_args, trainer.args, ... (config/shapes.py)
        _set_dotted(merged, key, value)
    if yaml_lengths:
        merged["train"].update({k.split(".")[1]: v for k, v in yaml_lengths.items()})
        origin = f"the config file {config_file}"
    line_lengths = _lengths_given(merged, values, origin, "the command line", length_notes)
    for key, value in values:
        _set_dotted(merged, key, value)
    if line_lengths:
        merged["train"].update({k.split(".")[1]: v for k, v in line_lengths.items()})
        origin = "the command line"
    try:
        cfg = check_values(build_config(merged))
    except ConfigError as err:
        if config_file and source not in str(err):
            raise ConfigError(f"{err}{source}") from None
        raise
    if config_file:  # paths from a config file in another folder stay inside it (config/paths.py)
        check_confined(cfg, config_file, _command_line_keys(parsed))
    set_length_origin(cfg, origin)
    say_notes(length_notes)
    return cfg


CLASSIFICATION_FORMATS = ("classification", "pair_classification")


def _classifier_recipe(selections: dict[str, str], merged: dict[str, Any], user: dict[str, Any],
                       parsed: list[tuple[str, Any]]) -> bool:
    """Choose the packaged classifier recipe for a classification job that names no train group.

    A job is a classification job when its data format or its model task says so. Without a
    ``peft`` group or any ``peft.*`` setting it fine-tunes every weight (``peft=full``,
    ``train=classify-full``, the measured best on the built-in pairs); with a named adapter method
    it keeps that method and takes ``train=classify``. Returns True when ``selections`` changed.
    """
    if "train" in selections:
        return False
    fmt = _given("data", "format", merged, user, parsed)
    task = _given("model", "task", merged, user, parsed)
    if fmt not in CLASSIFICATION_FORMATS and task != "sequence_classification":
        return False
    method = _given("peft", "method", {}, user, parsed)
    peft_keys = isinstance(user.get("peft"), dict) or any(
        key == "peft" or key.startswith("peft.") for key, _ in parsed)
    if "peft" not in selections and not peft_keys:
        selections["peft"] = "full"
        method = "full"
    method = method or _given("peft", "method", merged, {}, [])
    selections["train"] = "classify-full" if method == "full" else "classify"
    return True


def _given(section: str, key: str, merged: dict[str, Any], user: dict[str, Any],
           parsed: list[tuple[str, Any]]) -> Any:
    """``section.key`` as the command line, else the config file, else ``merged`` sets it."""
    for dotted, value in reversed(parsed):
        if dotted == f"{section}.{key}":
            return value
        if dotted == section and isinstance(value, dict) and key in value:
            return value[key]
    for source in (user, merged):
        block = source.get(section)
        if isinstance(block, dict) and key in block:
            return block[key]
    return None


def _user_shapes(user: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resolve ``${...}`` interpolation in a user's file, then translate component shapes
    (``model_args``, ``trainer: {name, args}``, ...) into dotted keys (see ``config/shapes.py``).

    A top-level ``paths`` mapping only holds values for ``${paths.…}`` and is dropped afterwards.
    """
    from tunesmith.config.shapes import translate_shapes, uses_shapes

    if _has_interpolation(user):
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:
            user = OmegaConf.to_container(OmegaConf.create(user), resolve=True)  # type: ignore[assignment]
        except OmegaConfBaseException as err:
            key = getattr(err, "full_key", None)
            raise ConfigError(f"{key or 'interpolation'} (in {where}): {str(err).splitlines()[0]}; a ${{...}} "
                              "reference must name a key of this file (e.g. ${paths.out} with a paths: section) "
                              "or an environment variable (${oc.env:NAME})") from None
        user.pop("paths", None)
    elif isinstance(user.get("paths"), dict):
        raise ConfigError(f"paths (in {where}): a paths section only holds values for ${{paths.…}} references, "
                          "and nothing here refers to it; remove it or use the values")
    return translate_shapes(user, where) if uses_shapes(user) else (user, {})


def _has_interpolation(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(_has_interpolation(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_interpolation(v) for v in value)
    return False


def _lengths_given(merged: dict[str, Any], items: list[tuple[str, Any]], origin: str,
                   source: str, notes: list[tuple[int, str]]) -> dict[str, Any]:
    """The length keys (``train.epochs`` / ``train.max_steps``) to set for one layer of user settings
    (``items``: dotted keys or a ``train`` dict), settled against the lengths ``merged`` holds so far."""
    from tunesmith.config.schema import TrainSection
    from tunesmith.config.validate import convert

    raw: dict[str, Any] = {}
    for key, value in items:
        if key == "train" and isinstance(value, dict):
            raw.update({f"train.{k}": v for k, v in value.items() if f"train.{k}" in (EPOCHS, MAX_STEPS)})
        elif key in (EPOCHS, MAX_STEPS):
            raw[key] = value
    types = {EPOCHS: float, MAX_STEPS: int}
    given = {key: convert(value, types[key], key) for key, value in raw.items()}
    train = merged.get("train") or {}
    default = TrainSection()
    return settle_length(float(train.get("epochs", default.epochs)), int(train.get("max_steps", default.max_steps)),
                         origin, given, source, notes)


def compose_groups(selections: dict[str, str]) -> dict[str, Any]:
    """Run Hydra's compose with the chosen group options; returns a plain nested dict."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
        cfg = compose("config", overrides=[f"{g}={o}" for g, o in selections.items()])
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """Parse ``key=value`` strings with Hydra's override grammar (lists, quoting, null)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    out: list[tuple[str, Any]] = []
    for text in overrides:
        if "=" not in text:
            raise ConfigError(
                f"override {text!r}: expected key=value, e.g. train.lr=1e-4 or model=minilm-l6"
            )
        try:
            (override,) = parser.parse_overrides([text.lstrip("+")])
        except HydraException as err:
            raise ConfigError(f"override {text!r}: {err}") from None
        if override.is_sweep_override():
            raise ConfigError(
                f"override {text!r}: a comma makes this a list of alternatives (a sweep), which "
                "`tunesmith train` does not run; quote a value that holds a comma "
                "(key='a,b') or give a list (key=[a,b])"
            )
        if override.is_delete():
            raise ConfigError(f"override {text!r}: deleting keys is not supported")
        out.append((override.key_or_group, _plain(override.value())))
    return out


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain nested dicts and lists (what ``config.yaml`` holds)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML; ``tunesmith train PATH`` reproduces the run.

    Secrets (values under ``*_token`` / ``*_key`` / ``*_secret`` keys, and the values of secret
    environment variables wherever they appear) are written as ``<masked>``; see ``config/secrets.py``.
    """
    import yaml

    from tunesmith.config.secrets import mask_config

    text = yaml.safe_dump(mask_config(config_to_dict(cfg)), sort_keys=False)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text("# Resolved tunesmith config of this run.\n" + text, encoding="utf-8")
    os.replace(tmp, target)  # a process killed mid-write leaves the old file or none, never half a config


def read_saved_config(path: str | os.PathLike) -> TrainConfig:
    """Read a run's ``config.yaml`` back into a checked ``TrainConfig`` (no packaged defaults mixed in)."""
    return check_values(build_config(_read_yaml(path)))


def _command_line_keys(parsed: list[tuple[str, Any]]) -> set[str]:
    """Dotted keys the command line set: ``data=rows.jsonl`` sets ``data.train``; ``data=arith`` (a
    packaged option) only picks the group, and ``data={...}`` sets the whole section."""
    keys = set()
    for key, value in parsed:
        if key in GROUPS and not isinstance(value, dict):
            if key in GROUP_FALLBACK_KEY and str(value) not in group_options(key):
                keys.add(f"{key}.{GROUP_FALLBACK_KEY[key]}")
        else:
            keys.add(key)
    return keys


def _select(group: str, value: Any, selections: dict, values: list, source: str) -> None:
    options = group_options(group)
    name = str(value)
    if name in options:
        selections[group] = name
        return
    looks_like_path = "/" in name or "." in name or name.startswith("~")
    hint = "" if looks_like_path else did_you_mean(name, options)
    if group in GROUP_FALLBACK_KEY and not hint:
        values.append((f"{group}.{GROUP_FALLBACK_KEY[group]}", name))
        return
    raise ConfigError(
        f"{group}{source}: unknown option {name!r}.{hint} Packaged options: {', '.join(options)}"
    )


def _read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The top-level mapping of a YAML config file; an empty file, a repeated key or another
    top-level type is a ``ConfigError`` naming the file (and line)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise ConfigError(f"config file {str(p)!r} {what}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p}: not UTF-8 text (byte {err.start}); a config file is YAML text") from None
    try:
        data = yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        raise ConfigError(f"{p}: the file holds no settings (it is empty or only comments); give at least one "
                          "key (e.g. 'model: smollm2-135m-instruct'), or leave the file out to run the defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of config keys at the top, got {type(data).__name__}")
    return data


def _unique_key_loader() -> Any:
    """A ``yaml.SafeLoader`` that refuses a key repeated in one mapping (PyYAML keeps the last silently)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                    seen.setdefault(key, line)
                except TypeError:  # an unhashable key: SafeLoader reports it
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice (lines {first} and {line}); keep one",
                        key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def _deep_update(target: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _set_dotted(target: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = target
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])} is a value, not a section: cannot set {key}")
        node = nxt
    node[parts[-1]] = value


def _plain(value: Any) -> Any:
    """Hydra returns its own container types for lists/dicts; make them plain."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
