"""on_bad_rows: error stops at the first bad row; skip counts by reason and stops past max_bad_fraction."""

import json

import pytest

from tunesmith.data.bad_rows import BadRow, BadRowPolicy, BadRowReport, reason_of
from tunesmith.data.sources import load_rows
from tunesmith.errors import ConfigError, DataError


def parse(row, where):
    """A row parser like a format's: one example per row, DataError naming ``where`` otherwise."""
    if "q" not in row:
        raise DataError(f"{where}: missing column 'q'")
    if not row["q"].strip():
        raise DataError(f"{where}: column 'q' is blank", reason="empty text")
    return row["q"]


def rows_with(n_good, bad):
    return [({"q": f"question {i}"}, f"f:{i}") for i in range(n_good)] + bad


def test_error_mode_raises_the_first_error_unchanged():
    bad = [({}, "f:7"), ({"q": " "}, "f:8")]
    with pytest.raises(DataError) as err:
        BadRowPolicy("error").parse_all(rows_with(3, bad), parse)
    assert str(err.value) == "f:7: missing column 'q'"


def test_skip_counts_exactly_by_reason_and_keeps_the_first_few():
    bad = [({}, f"f:m{i}") for i in range(4)] + [({"q": ""}, f"f:e{i}") for i in range(3)]
    examples, report = BadRowPolicy("skip", max_bad_fraction=0.5).parse_all(rows_with(20, bad), parse)
    assert examples == [f"question {i}" for i in range(20)]
    assert report.total == 27 and report.n_bad == 7
    assert dict(report.counts) == {"missing column": 4, "empty text": 3}
    assert [b.where for b in report.first] == ["f:m0", "f:m1", "f:m2", "f:m3", "f:e0"]
    assert report.summary() == ("skipped 7 of 27 rows (25.9%): missing column 4, empty text 3; "
                                "first: f:m0, f:m1, f:m2, f:m3, f:e0")


def test_skip_fails_past_max_bad_fraction_with_counts_and_examples():
    bad = [({}, "f:a"), ({}, "f:b")]
    # 2 of 20 = 10% is allowed at exactly 0.1 ...
    _, report = BadRowPolicy("skip", 0.1).parse_all(rows_with(18, bad), parse)
    assert report.n_bad == 2
    # ... and not at 0.05.
    with pytest.raises(DataError) as err:
        BadRowPolicy("skip", 0.05, key="data.eval").parse_all(rows_with(18, bad), parse)
    message = str(err.value)
    assert message.startswith("data.eval: 2 of 20 rows are bad (10.0%), more than data.max_bad_fraction=0.05.")
    assert "By reason: missing column 2." in message and "f:a: missing column 'q'; f:b: missing column 'q'" in message
    assert err.value.reason == "too many bad rows"


def test_read_errors_from_load_rows_count_towards_the_report(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps({"q": f"q{i}"}) for i in range(8)] + ["{broken", json.dumps({"x": 1})]
    path.write_text("\n".join(lines) + "\n")
    policy = BadRowPolicy("skip", 0.25)
    read_errors = policy.collector()
    rows = load_rows(str(path), bad_rows=read_errors)
    examples, report = policy.parse_all(rows, parse, read_errors=read_errors)
    assert len(examples) == 8 and report.total == 10
    assert dict(report.counts) == {"invalid JSON": 1, "missing column": 1}
    assert [b.where for b in report.first] == [f"{path}:9", f"{path}:10"]
    # Under "error" nothing is collected: load_rows raises at the malformed line.
    assert BadRowPolicy("error").collector() is None
    with pytest.raises(DataError, match=rf"{path}:9: invalid JSON"):
        load_rows(str(path), bad_rows=BadRowPolicy("error").collector())


def test_reason_of_prefers_the_explicit_reason():
    assert reason_of(DataError("f:1: invalid JSON: Expecting value")) == "invalid JSON"
    assert reason_of(DataError("f:1: missing column 'x'", reason="custom")) == "custom"
    assert reason_of(DataError("f:1: something odd")) == "invalid row"
    # Messages the formats raise today, without an explicit reason:
    assert reason_of(DataError("f:7: cannot tell the data format from the columns ['foo']")) == "unknown format"
    assert reason_of(DataError("f:7: column 'instruction' must be text, got list")) == "wrong column type"
    assert BadRow.from_error(DataError("f:1: x must be text"), "f:1") == BadRow("f:1", "wrong column type",
                                                                                "f:1: x must be text")


def test_non_data_errors_are_bugs_and_propagate():
    def broken(row, where):
        raise KeyError("q")

    with pytest.raises(KeyError):
        BadRowPolicy("skip", 1.0).parse_all([({}, "f:1")], broken)


def test_report_without_bad_rows_and_bad_policy_values():
    assert BadRowReport(total=3).summary() == "no bad rows (of 3)"
    with pytest.raises(ConfigError, match="data.on_bad_rows: 'ignore' is not allowed; choose one of error, skip"):
        BadRowPolicy("ignore")
    with pytest.raises(ConfigError, match="data.max_bad_fraction: must be between 0 and 1"):
        BadRowPolicy("skip", 1.5)
