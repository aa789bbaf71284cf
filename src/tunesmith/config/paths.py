"""Path confinement: a config file from another folder may not read or write outside that folder.

A config file that lies outside the working directory (downloaded, shared, from another project)
may name dataset paths (``data.train``, ``data.eval``, ``data.retain``, ``data.mix[i].train``)
and output paths (``output_dir``, a ``file:`` ``train.mlflow_tracking_uri``) only inside its own
folder or the working directory. ``../../home/me/.ssh`` or ``/etc`` there is a ``ConfigError``
naming the key and where the path leads. Values given on the command line (or from Python) are
the user's own and are not confined. ``--allow-outside-paths`` (``allow_outside_paths=true`` on
the command line) turns the check off; a config file cannot turn it off for itself.

Example:
    ``check_confined(cfg, "/downloads/x/config.yaml", cli_keys=set())`` -> ``ConfigError: data.train: '../secret.jsonl' resolves to /downloads/secret.jsonl, outside ...``
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from tunesmith.errors import ConfigError

SWITCH = "allow_outside_paths"
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt", ".arrow")


def looks_like_path(spec: str) -> bool:
    """True when a dataset spec names local files (``./d.jsonl``, ``/x``, ``data/*.csv``, an existing
    folder); False for built-in names (``arith``), hub ids that are not folders here, and
    ``package.module:attr`` handlers."""
    if ":" in spec and "/" not in spec and "\\" not in spec:
        return False  # a dotted-path dataset handler (code), not a file
    return (spec.startswith((".", "/", "~", "\\")) or any(c in spec for c in "*?[")
            or Path(spec).suffix.lower() in DATA_SUFFIXES or Path(spec).expanduser().exists())


def path_values(cfg: Any) -> Iterator[tuple[str, str]]:
    """``(dotted key, local path)`` for every dataset and output path in a config."""
    data = cfg.data
    for key, spec in (("data.train", data.train), ("data.eval", data.eval), ("data.retain", data.retain)):
        if spec and looks_like_path(spec):
            yield key, spec
    for i, source in enumerate(data.mix):
        if source.train and looks_like_path(source.train):
            yield f"data.mix[{i}].train", source.train
    if cfg.output_dir:
        yield "output_dir", cfg.output_dir
    uri = cfg.train.mlflow_tracking_uri
    if uri and (uri.startswith("file:") or "://" not in uri):
        yield "train.mlflow_tracking_uri", _file_uri_path(uri)


def _file_uri_path(uri: str) -> str:
    if not uri.startswith("file:"):
        return uri
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(uri).path)


def _resolved(spec: str) -> Path:
    """Where a spec leads; for a glob, the folder before its first wildcard."""
    text = os.path.expanduser(spec)
    cut = min((text.index(c) for c in "*?[" if c in text), default=None)
    if cut is not None:
        text = os.path.dirname(text[:cut]) or "."
    return Path(text).resolve()  # follows symlinks: a link inside the folder to outside is outside


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def is_foreign(config_file: str | os.PathLike, cwd: Optional[Path] = None) -> bool:
    """True when the config file does not lie in the working directory (or below it)."""
    cwd = (cwd or Path.cwd()).resolve()
    return not _inside(Path(config_file).resolve().parent, cwd)


def _set_on_command_line(key: str, cli_keys: Iterable[str]) -> bool:
    """``data.train`` counts as set by ``data.train=...`` and by a whole-section ``data={...}``."""
    base = key.split("[", 1)[0]
    return any(base == k or base.startswith(f"{k}.") for k in cli_keys)


def check_confined(cfg: Any, config_file: str | os.PathLike, cli_keys: Iterable[str],
                   cwd: Optional[Path] = None) -> None:
    """Raise ``ConfigError`` for a path from a foreign config file that leads outside its folder.

    Args:
        cfg: the composed ``TrainConfig``.
        config_file: the YAML file the config was read from.
        cli_keys: dotted keys set on the command line (never confined).
        cwd: the working directory (default: the current one).
    """
    cli_keys = set(cli_keys)
    if getattr(cfg, SWITCH, False) or not is_foreign(config_file, cwd):
        return
    cwd = (cwd or Path.cwd()).resolve()
    folder = Path(config_file).resolve().parent
    for key, spec in path_values(cfg):
        if _set_on_command_line(key, cli_keys):
            continue
        target = _resolved(spec)
        if not (_inside(target, folder) or _inside(target, cwd)):
            raise ConfigError(
                f"{key}: {spec!r} (in {config_file}) resolves to {target}, outside the config file's folder "
                f"({folder}) and the working directory ({cwd}). A config file from another folder may only "
                f"name dataset and output paths inside those. If you trust this config, pass "
                f"--allow-outside-paths (or {SWITCH}=true on the command line), or set {key} on the command line")


def check_switch_not_in_file(user: dict[str, Any], config_file: str | os.PathLike) -> None:
    """A config file may not lift its own confinement: ``allow_outside_paths`` is command-line only."""
    if SWITCH in user:
        raise ConfigError(f"{SWITCH} (in {config_file}): can only be given on the command line "
                          f"(--allow-outside-paths) or from Python, never in a config file, so that a "
                          "config from elsewhere cannot lift its own path confinement")
