"""JSON-lines in and out for batch inference (``tunesmith generate --input``, ``tunesmith predict --input``).

Each input line is a JSON object holding the text in one field (``prompt`` for generate, ``text``
for predict, or the field you name); the output repeats each row with the answer added::

    {"prompt": "Add 2 and 3.", "id": 7}   ->   {"prompt": "Add 2 and 3.", "id": 7, "output": "#### 5"}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

from tunesmith.errors import DataError


def read_rows(path: str | Path, field: str, pair_field: Optional[str] = None) -> list[dict[str, Any]]:
    """The rows of a JSONL file, each checked to hold a string in ``field`` (and ``pair_field`` if given).

    Blank lines are skipped.

    Raises:
        DataError: the file is missing, or a line is not a JSON object with that field, naming file:line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: invalid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object like {{\"{field}\": \"...\"}}, got {line[:60]!r}")
        for name in (field, pair_field):
            if name is None:
                continue
            if name not in row:
                keys = ", ".join(sorted(row)) or "none"
                raise DataError(f"{path}:{number}: missing field '{name}' (the row has: {keys}); "
                                f"name the field holding the text with --field")
            if not isinstance(row[name], str):
                raise DataError(f"{path}:{number}: field '{name}' must be a string, got {row[name]!r}")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no rows (the file is empty)")
    return rows


def write_rows(rows: Iterable[dict[str, Any]], path: Optional[str | Path] = None) -> None:
    """Write rows as JSON lines to ``path`` (its folder is created), or to standard output for None."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
