"""Property tests of every data parser: random rows and random file contents either parse or raise
``DataError`` naming the file and row, never a bare ``KeyError`` / ``TypeError`` / ``AttributeError``.

Covers each registered row format (forced and ``auto``), both bad-row policies, and each file
reader (``.jsonl``, ``.json``, ``.csv``, ``.tsv``, ``.txt``, ``.parquet``). ``TUNESMITH_HYPOTHESIS_EXAMPLES``
raises the number of random inputs per test (default 80).
"""

from __future__ import annotations

import json
import os
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.data.bad_rows import BadRowPolicy
from tunesmith.data.examples import EXAMPLE_KINDS
from tunesmith.api.data_entry import prepare_parser, to_examples
from tunesmith.data.formats import FORMATS, detection_order
from tunesmith.data.sources import read_file
from tunesmith.errors import DataError

EXAMPLES = int(os.environ.get("TUNESMITH_HYPOTHESIS_EXAMPLES", "80"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FILE = "rows.jsonl"

# Every column any format reads, and the keys chat turns use: random rows draw mostly from these so
# that they reach deep into each parser instead of failing format detection every time.
COLUMNS = sorted({c for name in detection_order() for c in FORMATS.get(name).columns + FORMATS.get(name).optional}
                 | {"answer"})
TURN_KEYS = ["role", "content", "from", "value", "train"]
ROLES = ["system", "user", "assistant", "human", "gpt", "tool", "", "USER"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["", " ", "0", "1", "2", "neg", "pos", "\x00", "\ud800x"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=12)
turn = st.one_of(
    st.dictionaries(st.sampled_from(TURN_KEYS), st.one_of(st.sampled_from(ROLES), json_values), max_size=4),
    json_values,
)
turns = st.one_of(st.lists(turn, max_size=5), json_values)
cell = st.one_of(json_values, turns)
rows = st.dictionaries(st.one_of(st.sampled_from(COLUMNS), st.text(max_size=8)), cell, max_size=6)
# Rows that are not objects at all reach the parsers too (a JSON list of numbers, say).
any_rows = st.lists(st.one_of(rows, rows, rows, json_values), min_size=1, max_size=5)
label_names = st.one_of(st.none(), st.lists(st.sampled_from(["neg", "pos", "0", "x", ""]), min_size=1, max_size=3))


def _located(err: DataError, files: tuple[str, ...] = (FILE,)) -> bool:
    """The error names one of the files (and so the row, as ``file:line`` / ``file: item N``)."""
    text = str(err)
    return any(f in text for f in files) or text.startswith("data.")


def _numbered(items: list) -> list[tuple]:
    return [(row, f"{FILE}:{i + 1}") for i, row in enumerate(items)]


def _check_examples(examples: list) -> None:
    for example in examples:
        assert type(example) in EXAMPLE_KINDS
        assert example.where.startswith(FILE)


@pytest.mark.parametrize("fmt", ["auto", *sorted(FORMATS.names())])
@SETTINGS
@given(items=any_rows, names=label_names)
def test_every_format_parses_or_raises_data_error(fmt, items, names):
    """Strict mode: the whole dataset parses, or the first bad row raises DataError with file:line."""
    try:
        examples, info = to_examples(_numbered(items), fmt, label_names=names)
    except DataError as err:
        assert _located(err), f"DataError without the file/row: {err}"
        return
    _check_examples(examples)
    assert info.format in FORMATS.names()


@pytest.mark.parametrize("fmt", ["auto", *sorted(FORMATS.names())])
@SETTINGS
@given(items=any_rows, mode=st.sampled_from(["error", "skip"]))
def test_bad_row_policies_only_ever_raise_data_error(fmt, items, mode):
    """What the pipeline does: prepare the parser, then parse every row under the bad-row policy."""
    policy = BadRowPolicy(mode, max_bad_fraction=1.0)
    try:
        parse_row, _ = prepare_parser(_numbered(items), fmt, strict=mode == "error")
        examples, report = policy.parse_all(_numbered(items), parse_row)
    except DataError as err:
        assert _located(err), f"DataError without the file/row: {err}"
        return
    _check_examples(examples)
    assert len(examples) + report.n_bad == len(items)
    for bad in report.first:
        assert bad.where.startswith(FILE) and bad.reason


@SETTINGS
@given(items=st.lists(rows, min_size=1, max_size=4),
       mapping=st.dictionaries(st.sampled_from(COLUMNS), st.text(min_size=1, max_size=6), max_size=2))
def test_column_mapping_parses_or_raises_data_error(items, mapping):
    """``data.columns`` renames a file's columns before parsing; a row without the mapped column is a DataError."""
    try:
        examples, _ = to_examples(_numbered(items), "auto", columns=mapping)
    except DataError as err:
        assert _located(err), f"DataError without the file/row: {err}"
        return
    _check_examples(examples)


# --- file readers --------------------------------------------------------------------------------

def _lines_text(draw_lines: list) -> str:
    return "\n".join(draw_lines)


json_line = st.one_of(json_values.map(json.dumps), rows.map(lambda r: json.dumps(r, allow_nan=True)),
                      st.text(alphabet=string.printable, max_size=30))
raw_bytes = st.binary(max_size=200)
file_text = st.one_of(
    st.lists(json_line, max_size=6).map(_lines_text),                      # JSONL-ish
    st.lists(rows, max_size=4).map(lambda r: json.dumps(r, allow_nan=True)),  # a JSON list of objects
    st.dictionaries(st.sampled_from(["data", "train", "x"]), st.lists(json_values, max_size=3), max_size=2)
    .map(json.dumps),                                                       # {"data": [...]} and friends
    st.lists(st.lists(st.text(alphabet=string.printable.replace("\r", ""), max_size=8), max_size=4), max_size=5)
    .map(lambda recs: "\n".join(",".join(r) for r in recs)),               # CSV-ish, quotes and all
    st.text(max_size=80),
)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv", ".txt"])
@SETTINGS
@given(content=st.one_of(file_text.map(lambda t: t.encode("utf-8", "surrogatepass")), raw_bytes),
       mode=st.sampled_from(["error", "skip"]))
def test_every_file_reader_reads_or_raises_data_error(suffix, content, mode):
    """A random file reads to rows and then examples, or raises DataError naming the file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        _read_and_parse(path, mode)


parquet_rows = st.lists(st.fixed_dictionaries({}, optional={
    "text": st.one_of(st.none(), st.text(max_size=10)), "label": st.one_of(st.none(), st.integers(-3, 3)),
    "instruction": st.text(max_size=6), "output": st.one_of(st.text(max_size=6), st.integers()),
    "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": st.text(max_size=5)}),
                         max_size=3),
}), min_size=1, max_size=4)


@SETTINGS
@given(items=parquet_rows, damage=st.one_of(st.none(), st.integers(min_value=0, max_value=400)))
def test_parquet_reader_reads_or_raises_data_error(items, damage):
    """A random table (or a damaged file) reads to rows and then examples, or raises DataError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pylist(items)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # pyarrow cannot even write such rows: nothing to read
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.parquet"
        pq.write_table(table, path)
        if damage is not None:
            data = bytearray(path.read_bytes())
            data[damage % len(data)] ^= 0xFF
            path.write_bytes(bytes(data[: max(1, damage)]))
        _read_and_parse(path, "error")


def _read_and_parse(path: Path, mode: str) -> None:
    policy = BadRowPolicy(mode, max_bad_fraction=1.0)
    try:
        read_errors = policy.collector()
        found = read_file(path, "train", read_errors)
        if not found:
            return
        parse_row, _ = prepare_parser(found, "auto", strict=mode == "error")
        examples, _ = policy.parse_all(found, parse_row, read_errors=read_errors or ())
    except DataError as err:
        assert str(path) in str(err), f"DataError without the file: {err}"
        return
    for example in examples:
        assert example.where.startswith(str(path))
