"""Raw rows read a few at a time, with a position to continue from (``data.streaming=true``).

``open_rows(spec, ...)`` gives a reader over one pass of the corpus:

==================  ==========================================  ==================================
spec                read with                                   position (JSON, in a checkpoint)
==================  ==========================================  ==================================
``.jsonl`` files    the file itself, line by line               file, byte offset, line number
``.txt`` files      the file itself: ``{"text": line}``         file, byte offset, line number
``.parquet`` files  pyarrow, one row group in memory at a time  file, row
a hub dataset       ``datasets.load_dataset(streaming=True)``   the dataset's ``state_dict()``
==================  ==========================================  ==================================

A folder or glob is its supported files in the order ``sources.load_rows`` reads them, and each
row's ``where`` is the one ``load_rows`` gives it (``d.jsonl:3``, ``d.parquet: row 7``), so
errors name the same file:line in both ways of reading. Only the current line (or row group) is
in memory: a corpus larger than RAM reads in flat memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from tunesmith.data.bad_rows import BadRow
from tunesmith.data.sources import Row, is_builtin, is_saved_dataset, source_files
from tunesmith.errors import ConfigError, DataError

STREAM_SUFFIXES = (".jsonl", ".txt", ".parquet")  # files a stream reads itself
_BOM = b"\xef\xbb\xbf"


def check_stream_source(spec: str, split: str, key: str = "data.train") -> Optional[list[Path]]:
    """The files a stream of ``spec`` reads (None: a hub dataset); an error for what cannot stream.

    Example:
        ``check_stream_source("rows.csv", "train")`` raises ``ConfigError: data.streaming: data.train
        reads rows.csv (.csv); a stream reads .jsonl, .txt and .parquet ...``
    """
    if is_builtin(spec):
        raise ConfigError(f"data.streaming: data.train={spec!r} is a built-in dataset made in memory; streaming is "
                          "for corpora in files or on the hub: set data.streaming=false, or give a .jsonl, .txt or "
                          ".parquet file, folder or glob")
    path = Path(spec).expanduser()
    if path.is_dir() and is_saved_dataset(path):
        raise ConfigError(f"data.streaming: {key}={spec!r} is a save_to_disk folder, which is read memory-mapped "
                          "already; set data.streaming=false")
    files = source_files(spec, split, key)
    if files is None:
        return None
    for file in files:
        if file.suffix.lower() not in STREAM_SUFFIXES:
            raise ConfigError(f"data.streaming: {key} reads {file} ({file.suffix}); a stream reads "
                              f"{', '.join(STREAM_SUFFIXES)} files: convert it to JSONL (one object per line) or "
                              "Parquet, or set data.streaming=false")
    return files


class FileRows:
    """One pass over local ``.jsonl`` / ``.txt`` / ``.parquet`` files from a position.

    ``read(n)`` gives up to ``n`` rows (fewer only at the end of the last file), ``position`` is
    where the next row starts. Bad records (a line that is not JSON, not an object, not UTF-8) raise
    ``DataError`` at file:line, or with ``bad_rows`` (a list) are appended to it and skipped.
    """

    def __init__(self, files: list[Path], position: Optional[dict[str, Any]] = None,
                 bad_rows: Optional[list[BadRow]] = None) -> None:
        self.files = files
        self.sizes = [f.stat().st_size for f in files]
        self.position = dict(position or {"file": 0, "offset": 0, "line": 0, "row": 0})
        at = self.position["file"]
        if position and at < len(files) and position.get("path") not in (None, str(files[at])):
            raise DataError(f"data.train: the saved stream position is in {position['path']}, but file {at + 1} of "
                            f"data.train is now {files[at]}: the files changed since the checkpoint was saved; "
                            "restore them, or start the run again (train.resume=none)")
        self._name_file()
        self.bad_rows = bad_rows
        self._handle: Any = None  # the open text file, or the ParquetFile with its current row group
        self._group: Any = None  # (first row, rows) of the Parquet row group in memory

    @property
    def bytes_read(self) -> int:
        """Bytes of the files before the position (a Parquet file counts by its share of rows read)."""
        done = sum(self.sizes[:self.position["file"]])
        if self.position["file"] >= len(self.files):
            return done
        file = self.files[self.position["file"]]
        if file.suffix.lower() == ".parquet":
            total = self._parquet().metadata.num_rows or 1
            return done + int(self.sizes[self.position["file"]] * self.position["row"] / total)
        return done + self.position["offset"]

    @property
    def total_bytes(self) -> int:
        """The size of every file of the corpus, in bytes."""
        return sum(self.sizes)

    def read(self, n: int) -> list[Row]:
        """Up to ``n`` rows from the position on, the position moved past them."""
        rows: list[Row] = []
        while len(rows) < n and self.position["file"] < len(self.files):
            file = self.files[self.position["file"]]
            got = (self._parquet_rows(file, n - len(rows)) if file.suffix.lower() == ".parquet"
                   else self._line_rows(file, n - len(rows)))
            rows += got
            if len(rows) < n:  # this file is done: the next one from its start
                self.close()
                self.position = {"file": self.position["file"] + 1, "offset": 0, "line": 0, "row": 0}
                self._name_file()
        return rows

    def _name_file(self) -> None:
        """Keep the current file's path in the position, so a resume can tell the files changed."""
        at = self.position["file"]
        if at < len(self.files):
            self.position["path"] = str(self.files[at])

    def close(self) -> None:
        """Close the open file (the next ``read`` opens it again at the position)."""
        if self._handle is not None and hasattr(self._handle, "close"):
            self._handle.close()
        self._handle, self._group = None, None

    def _line_rows(self, file: Path, n: int) -> list[Row]:
        if self._handle is None:
            try:
                self._handle = open(file, "rb")  # noqa: SIM115 - kept open between reads, closed by close()
            except OSError as err:
                raise DataError(f"{file}: cannot read the file ({err.strerror or err})") from None
            self._handle.seek(self.position["offset"])
        rows: list[Row] = []
        text_file = file.suffix.lower() == ".txt"
        while len(rows) < n:
            raw = self._handle.readline()
            if not raw:
                break
            start = self.position["offset"]
            self.position["offset"] += len(raw)
            self.position["line"] += 1
            if start == 0 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            where = f"{file}:{self.position['line']}"
            row = self._parse_line(raw.rstrip(b"\r\n"), where, text_file)
            if row is not None:
                rows.append((row, where))
        return rows

    def _parse_line(self, raw: bytes, where: str, text_file: bool) -> Optional[dict[str, Any]]:
        """A line's row; None for a blank line or a bad record that is skipped."""
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return self._bad(where, "not UTF-8", f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column "
                                                 f"{err.start + 1}); re-save the file as UTF-8")
        if not line.strip():
            return None
        if text_file:
            return {"text": line}
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            return self._bad(where, "invalid JSON", f"invalid JSON: {err.msg} (column {err.colno})")
        if not isinstance(obj, dict):
            return self._bad(where, "not an object",
                             f"expected a JSON object, got {type(obj).__name__}: {line.strip()[:60]}")
        return obj

    def _bad(self, where: str, reason: str, detail: str) -> None:
        err = DataError(f"{where}: {detail}", reason=reason)
        if self.bad_rows is None:
            raise err
        self.bad_rows.append(BadRow.from_error(err, where))
        return None

    def _parquet(self) -> Any:
        import pyarrow.parquet as pq

        if self._handle is None:
            file = self.files[self.position["file"]]
            try:
                self._handle = pq.ParquetFile(file)
            except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
                raise DataError(f"{file}: not a readable Parquet file ({type(err).__name__}: {str(err)[:200]})") from None
        return self._handle

    def _parquet_rows(self, file: Path, n: int) -> list[Row]:
        parquet = self._parquet()
        rows: list[Row] = []
        while len(rows) < n and self.position["row"] < parquet.metadata.num_rows:
            at = self.position["row"]
            if self._group is None or not self._group[0] <= at < self._group[0] + len(self._group[1]):
                self._group = self._row_group_of(parquet, at)
            first, group = self._group
            take = group[at - first:at - first + n - len(rows)]
            rows += [(row, f"{file}: row {at + k}") for k, row in enumerate(take)]
            self.position["row"] += len(take)
        return rows

    @staticmethod
    def _row_group_of(parquet: Any, row: int) -> tuple[int, list[dict[str, Any]]]:
        first = 0
        for g in range(parquet.num_row_groups):
            count = parquet.metadata.row_group(g).num_rows
            if row < first + count:
                return first, parquet.read_row_group(g).to_pylist()
            first += count
        raise DataError(f"row {row} is past the end of the Parquet file ({first} rows)")


class HubRows:
    """One pass over a hub dataset read with ``datasets.load_dataset(..., streaming=True)``; the
    position is the dataset's own ``state_dict()`` (with the count of rows read, for ``where``)."""

    def __init__(self, name: str, split: str, subset: Optional[str], key: str,
                 position: Optional[dict[str, Any]] = None) -> None:
        import datasets

        label = f"{name!r}" + (f" (subset {subset!r})" if subset else "")
        try:
            self.dataset = datasets.load_dataset(name, subset, split=split, streaming=True)
        except Exception as err:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
            raise DataError(f"{key}: cannot stream {label}: it is not a local .jsonl, .txt or .parquet file, folder "
                            f"or glob, and the hub could not open it ({type(err).__name__}: {str(err)[:300]})") from err
        self.name, self.split = name, split
        self.rows_read = int((position or {}).get("rows", 0))
        if position and position.get("state") is not None:
            self.dataset.load_state_dict(position["state"])
        self._iter: Any = None
        self.total_bytes = None

    @property
    def position(self) -> dict[str, Any]:
        """Rows read so far and the dataset's state after them."""
        return {"rows": self.rows_read, "state": self.dataset.state_dict()}

    @property
    def bytes_read(self) -> None:
        """Unknown for a hub dataset (rows are counted instead)."""
        return None

    def read(self, n: int) -> list[Row]:
        """Up to ``n`` rows; fewer only at the end of the split."""
        if self._iter is None:
            self._iter = iter(self.dataset)
        rows: list[Row] = []
        for row in self._iter:
            rows.append((dict(row), f"{self.name}[{self.split}]:{self.rows_read}"))
            self.rows_read += 1
            if len(rows) == n:
                break
        return rows

    def close(self) -> None:
        """Forget the iterator (the next ``read`` starts one at the dataset's state)."""
        self._iter = None


def open_rows(spec: str, split: str, subset: Optional[str], key: str, position: Optional[dict[str, Any]] = None,
              bad_rows: Optional[list[BadRow]] = None) -> Any:
    """A reader (``FileRows`` or ``HubRows``) over one pass of ``spec`` from ``position`` (None: the start)."""
    files = check_stream_source(spec, split, key)
    if files is None:
        return HubRows(spec, split, subset, key, position)
    return FileRows(files, position, bad_rows)
