"""Reading one field of a raw row, with errors that name the file:line, the field and what is allowed.

Shared by every row format so that a missing, misspelled, mistyped or empty field is reported the
same way whichever format reads it.
"""

from __future__ import annotations

import difflib
from typing import Any

from tunesmith.errors import DataError

# Short keys a bad row is counted under with data.on_bad_rows=skip (see ``bad_rows.py``).
MISSING = "missing column"
WRONG_TYPE = "wrong column type"
EMPTY = "empty text"
BAD_ROLE = "bad role"
BAD_TURNS = "bad turn order"
NO_ASSISTANT = "no assistant message"
BAD_LABEL = "bad label"
UNKNOWN_FORMAT = "unknown format"


def found(row: dict[str, Any]) -> str:
    """``{"b": 1, "a": 2}`` -> ``"a, b"``: the keys of a row, for error messages."""
    return ", ".join(sorted(str(k) for k in row)) or "(none)"


def missing(row: dict[str, Any], key: str, where: str, kind: str = "column") -> DataError:
    """The error for an absent field, naming a present one that looks like a misspelling of it.

    ``{"ouput": "5"}``, ``"output"`` -> ``"f:3: missing column 'output'; the row has 'ouput': a
    misspelling? (rename it, or set data.columns={output: ouput}). Columns found: ouput"``.
    """
    close = difflib.get_close_matches(key, [str(k) for k in row], n=1, cutoff=0.6)
    hint = ""
    if close:
        fix = f"rename it, or set data.columns={{{key}: {close[0]}}}" if kind == "column" else "rename it"
        hint = f"; the row has '{close[0]}': a misspelling? ({fix})"
    return DataError(f"{where}: missing {kind} '{key}'{hint}. {kind.capitalize()}s found: {found(row)}",
                     reason=MISSING)


def read_text(row: dict[str, Any], key: str, where: str, *, required: bool = True, kind: str = "column") -> str:
    """The text in ``row[key]``.

    ``{"q": "Hi"}``, ``"q"`` -> ``"Hi"``; a number becomes text (``{"a": 5}`` -> ``"5"``) because
    answers are often stored as numbers. An optional field that is absent or null reads as ``""``;
    a required one must be present and non-blank.
    """
    value = row.get(key)
    if value is None:
        if not required:
            return ""
        if key in row:
            raise DataError(f"{where}: {kind} '{key}' is null; it must be non-empty text", reason=EMPTY)
        raise missing(row, key, where, kind)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"{where}: {kind} '{key}' must be text, got {type(value).__name__}: {value!r:.80}",
                        reason=WRONG_TYPE)
    text = value if isinstance(value, str) else str(value)
    if required and not text.strip():
        raise DataError(f"{where}: {kind} '{key}' is empty; it must be non-empty text", reason=EMPTY)
    return text


def read_list(row: dict[str, Any], key: str, where: str, item: str) -> list[Any]:
    """The non-empty list in ``row[key]``: ``{"messages": [{...}]}`` -> ``[{...}]``."""
    if key not in row:
        raise missing(row, key, where)
    value = row[key]
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: column '{key}' must be a non-empty list of {item}, got {value!r:.80}",
                        reason=WRONG_TYPE)
    return value


def read_flag(row: dict[str, Any], key: str, where: str) -> bool | None:
    """``{"train": false}`` -> ``False``; absent or null -> ``None``; anything else is an error."""
    value = row.get(key)
    if value is not None and not isinstance(value, bool):
        raise DataError(f"{where}: '{key}' must be true or false, got {value!r:.80}", reason=WRONG_TYPE)
    return value
