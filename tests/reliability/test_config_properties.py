"""Bad config values generated from the schema, on the command line and in YAML files, always end the
same way: exit code 2, one line on stderr that names the key, no traceback, no model loaded.

Every leaf of ``TrainConfig`` is read from the dataclasses; each gets values its type cannot take
(words for numbers, NaN and infinities, integers beyond 64 bits, negative numbers, fractions for
integers, names outside a ``Literal``, scalars for mappings). ``TUNESMITH_HYPOTHESIS_EXAMPLES`` (default 80) sets how many.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import string
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union
from unittest import mock

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tunesmith.api import FineTuner
from tunesmith.cli.main import main
from tunesmith.config.schema import TrainConfig

EXAMPLES = int(os.environ.get("TUNESMITH_HYPOTHESIS_EXAMPLES", "80"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
NONE_WORDS = {"none", "null", "~"}


def leaves(cls: type = TrainConfig, prefix: str = "") -> list[tuple[str, Any]]:
    """``[("train.lr", float), ("peft.method", Literal[...]), ...]`` for every setting in the schema."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += leaves(tp, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", tp))
    return out


def _base(tp: Any) -> tuple[Any, bool]:
    """``Optional[int]`` -> ``(int, True)``; other types -> ``(tp, False)``."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


WORDS = st.text(string.ascii_letters, min_size=1, max_size=8).filter(
    lambda w: w.lower() not in NONE_WORDS | {"true", "false", "yes", "no", "nan", "inf", "infinity", "on", "off",
                                             "y", "n"})
NON_FINITE = st.sampled_from([float("nan"), float("inf"), float("-inf")])
HUGE = st.integers(min_value=2**63, max_value=2**80) | st.integers(min_value=-(2**80), max_value=-(2**63) - 1)
NEGATIVE = st.integers(min_value=-10**6, max_value=-2)  # no count, size, rate or fraction is negative


def bad_values(tp: Any) -> st.SearchStrategy | None:
    """Python values a setting of type ``tp`` must refuse; None when the type has no clear bad value."""
    base, _ = _base(tp)
    origin = typing.get_origin(base)
    if base is bool:
        return WORDS | st.integers(min_value=2, max_value=10**6) | st.floats(0.1, 0.9)
    if base is int:
        return WORDS | NON_FINITE | HUGE | NEGATIVE | st.floats(0.1, 1e6).filter(lambda x: not float(x).is_integer())
    if base is float:
        return WORDS | NON_FINITE | NEGATIVE
    if origin is Literal:
        allowed = {str(a) for a in typing.get_args(base)}
        return WORDS.filter(lambda w: w not in allowed)
    if origin is dict:
        return st.integers(1, 100) | WORDS
    if origin is list and typing.get_origin(typing.get_args(base)[0]) is Literal:
        allowed = {str(a) for a in typing.get_args(typing.get_args(base)[0])}
        return WORDS.filter(lambda w: w not in allowed).map(lambda w: [w])
    return None


CHECKED = [(key, tp) for key, tp in leaves() if bad_values(tp) is not None]
SETTING = st.sampled_from(CHECKED).flatmap(lambda kt: st.tuples(st.just(kt[0]), bad_values(kt[1])))


def as_override(key: str, value: Any) -> str:
    """A ``key=value`` string as a user types it (``nan``, ``inf``, ``[x]``, ``1e+30``)."""
    if isinstance(value, list):
        return f"{key}=[{','.join(str(v) for v in value)}]"
    if isinstance(value, float) and value != value:
        return f"{key}=nan"
    return f"{key}={value}"


def as_yaml(key: str, value: Any) -> str:
    """A config file setting ``key`` (nested under its section) to ``value``."""
    tree: dict[str, Any] = {}
    node = tree
    *sections, name = key.split(".")
    for part in sections:
        node = node.setdefault(part, {})
    node[name] = value
    return yaml.safe_dump(tree)


def run_refused(argv: list[str]) -> tuple[int, str, list]:
    """``tunesmith ARGV`` with stderr captured and model loading refused; exit code, stderr, load attempts."""
    loads: list = []
    err, out = io.StringIO(), io.StringIO()
    with mock.patch.object(FineTuner, "_load_model", lambda self, *a, **k: loads.append(a)), \
            contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, err.getvalue() + out.getvalue(), loads


def assert_refused(code: int, text: str, loads: list, key: str) -> None:
    lines = text.strip().splitlines()
    assert code == 2, text
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert key in lines[0], f"{key} not named: {text}"
    assert "Traceback" not in text and not loads


def test_every_setting_of_the_schema_is_covered():
    keys = {k for k, _ in CHECKED}
    assert {"train.lr", "train.seed", "train.epochs", "data.eval_split", "peft.method", "train.keep_best",
            "train.trainer_args", "train.log_to", "data.max_samples", "eval.temperature"} <= keys
    assert len(CHECKED) > 60


@SETTINGS
@given(setting=SETTING)
def test_a_bad_override_is_one_line_naming_the_key(setting):
    key, value = setting
    assert_refused(*run_refused(["train", as_override(key, value)]), key=key)


@SETTINGS
@given(setting=SETTING)
def test_a_bad_value_in_a_yaml_file_is_one_line_naming_the_key_and_the_file(setting):
    key, value = setting
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.yaml"
        path.write_text(as_yaml(key, value), encoding="utf-8")
        code, text, loads = run_refused(["train", str(path)])
    assert_refused(code, text, loads, key=key)
    assert "run.yaml" in text
