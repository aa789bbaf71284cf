"""What happens to rows that cannot be read or parsed: ``data.on_bad_rows`` and ``data.max_bad_fraction``.

Bad rows show up at two moments, and both end in one ``BadRowReport``:

1. **Reading** (``sources.load_rows``): a malformed JSONL line, a CSV record with the wrong number
   of fields, a line that is not UTF-8. ``load_rows(spec, bad_rows=policy.collector())`` raises on
   the first one under ``error`` and, under ``skip``, leaves the record out and appends a
   ``BadRow`` to the list instead.
2. **Parsing** (rows -> canonical examples): ``policy.parse_all(rows, parse_fn, read_errors=...)``
   calls ``parse_fn`` on every row; under ``skip`` each ``DataError`` is counted by reason.

Example (``d.jsonl``, whose line 2 is not JSON)::

    policy = BadRowPolicy("skip", max_bad_fraction=0.5)
    bad = policy.collector()
    rows = load_rows("d.jsonl", bad_rows=bad)
    examples, report = policy.parse_all(rows, parse_row, read_errors=bad)
    report.summary()  # 'skipped 1 of 3 rows (33.3%): invalid JSON 1; first: d.jsonl:2'
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Sequence, TypeVar

from tunesmith.errors import ConfigError, DataError

R = TypeVar("R")
E = TypeVar("E")
BadRowMode = Literal["error", "skip"]
MODES: tuple[str, ...] = ("error", "skip")
KEPT_EXAMPLES = 5  # first bad rows kept verbatim in a report; counts are always exact

# Fallback reason keys for a DataError raised without ``reason=``: the first phrase found in the
# message wins. Row parsers that set ``reason`` explicitly never reach this table.
_REASON_PHRASES: tuple[tuple[str, str], ...] = (
    ("invalid JSON", "invalid JSON"),
    ("not valid UTF-8", "not UTF-8"),
    ("missing column", "missing column"),
    ("must be text", "wrong column type"),
    ("cannot tell the data format", "unknown format"),
    ("no assistant message", "no assistant message"),
    ("empty", "empty text"),
    ("role", "bad role"),
    ("label", "bad label"),
)
FALLBACK_REASON = "invalid row"


def reason_of(err: DataError) -> str:
    """The short key a bad row is counted under.

    Example:
        >>> reason_of(DataError("f.jsonl:3: missing column 'output'"))
        'missing column'
        >>> reason_of(DataError("anything", reason="too long"))
        'too long'
    """
    if getattr(err, "reason", None):
        return str(err.reason)
    text = str(err)
    for phrase, reason in _REASON_PHRASES:
        if phrase in text:
            return reason
    return FALLBACK_REASON


@dataclass(frozen=True)
class BadRow:
    """One row left out: ``BadRow("d.jsonl:2", "invalid JSON", "d.jsonl:2: invalid JSON: ...")``."""

    where: str
    reason: str
    message: str  # the full error text, location included

    @classmethod
    def from_error(cls, err: DataError, where: str) -> "BadRow":
        return cls(where, reason_of(err), str(err))


@dataclass
class BadRowReport:
    """Exact counts of bad rows by reason, plus the first few of them."""

    total: int = 0  # rows seen, good and bad
    counts: Counter = field(default_factory=Counter)
    first: list[BadRow] = field(default_factory=list)

    @property
    def n_bad(self) -> int:
        return sum(self.counts.values())

    @property
    def fraction(self) -> float:
        return self.n_bad / self.total if self.total else 0.0

    def add(self, bad: BadRow) -> None:
        """Count one bad row (``total`` is counted by the caller, once per row seen)."""
        self.counts[bad.reason] += 1
        if len(self.first) < KEPT_EXAMPLES:
            self.first.append(bad)

    def by_reason(self) -> str:
        """``'invalid JSON 2, missing column 1'``: most frequent first, ties by name."""
        ordered = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return ", ".join(f"{reason} {n}" for reason, n in ordered)

    def summary(self) -> str:
        """One line for logs: ``'skipped 3 of 120 rows (2.5%): invalid JSON 2, missing column 1; first: a:3, a:9'``."""
        if not self.n_bad:
            return f"no bad rows (of {self.total})"
        firsts = ", ".join(b.where for b in self.first)
        return (f"skipped {self.n_bad} of {self.total} rows ({self.fraction:.1%}): {self.by_reason()}; "
                f"first: {firsts}")


class BadRowPolicy:
    """``error``: the first bad row stops the run. ``skip``: bad rows are left out and counted, and
    the run stops only when more than ``max_bad_fraction`` of all rows are bad.

    Example:
        >>> examples, report = BadRowPolicy("skip", 0.1).parse_all([({"a": 1}, "f:1")], lambda row, where: row["a"])
        >>> examples, report.summary()
        ([1], 'no bad rows (of 1)')
    """

    def __init__(self, mode: BadRowMode = "error", max_bad_fraction: float = 0.05, key: str = "data.train") -> None:
        if mode not in MODES:
            raise ConfigError(f"data.on_bad_rows: {mode!r} is not allowed; choose one of {', '.join(MODES)}")
        if not 0.0 <= float(max_bad_fraction) <= 1.0:
            raise ConfigError(f"data.max_bad_fraction: must be between 0 and 1, got {max_bad_fraction!r}")
        self.mode = mode
        self.max_bad_fraction = float(max_bad_fraction)
        self.key = key  # the dataset's config key, named in the "too many bad rows" error

    def __repr__(self) -> str:
        return f"BadRowPolicy({self.mode!r}, max_bad_fraction={self.max_bad_fraction}, key={self.key!r})"

    def collector(self) -> list[BadRow] | None:
        """What to pass as ``load_rows(..., bad_rows=)``: a list to fill under skip, None under error."""
        return [] if self.mode == "skip" else None

    def parse_all(
        self,
        rows: Iterable[tuple[R, str]],
        parse_fn: Callable[[R, str], E],
        read_errors: Sequence[BadRow] = (),
    ) -> tuple[list[E], BadRowReport]:
        """``parse_fn(row, where)`` on every row; bad rows handled by the mode.

        ``read_errors`` are the rows ``load_rows`` already left out; they count as bad rows (and
        towards the total) so the fraction is over every record in the source. Only ``DataError``
        is treated as a bad row: any other exception is a bug and propagates.

        Example:
            >>> def parse(row, where):
            ...     if "q" not in row:
            ...         raise DataError(f"{where}: missing column 'q'")
            ...     return row["q"]
            >>> examples, report = BadRowPolicy("skip", 0.5).parse_all([({"q": "a"}, "f:1"), ({}, "f:2")], parse)
            >>> examples, report.summary()
            (['a'], 'skipped 1 of 2 rows (50.0%): missing column 1; first: f:2')
        """
        report = BadRowReport()
        if read_errors and self.mode == "error":
            first = read_errors[0]
            raise DataError(first.message, reason=first.reason)
        for bad in read_errors:
            report.total += 1
            report.add(bad)
        examples: list[E] = []
        for row, where in rows:
            report.total += 1
            try:
                examples.append(parse_fn(row, where))
            except DataError as err:
                if self.mode == "error":
                    raise
                report.add(BadRow.from_error(err, where))
        self.check(report)
        return examples, report

    def check(self, report: BadRowReport) -> None:
        """Raise when the report holds more bad rows than ``max_bad_fraction`` allows."""
        if not report.n_bad or report.fraction <= self.max_bad_fraction:
            return
        firsts = "; ".join(b.message for b in report.first[:3])
        raise DataError(
            f"{self.key}: {report.n_bad} of {report.total} rows are bad ({report.fraction:.1%}), more than "
            f"data.max_bad_fraction={self.max_bad_fraction:g}. By reason: {report.by_reason()}. "
            f"First: {firsts}. Fix the rows or raise data.max_bad_fraction.",
            reason="too many bad rows",
        )
