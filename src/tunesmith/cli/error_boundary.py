"""The one place where every ``tunesmith`` command's exceptions end up as a message and an exit code.

* an error tunesmith raises on purpose (``ConfigError``, ``DataError``, ``RunDirError``, ...) names
  the key, file or field: it is printed on one line and the command exits with 2;
* an ``OSError`` about a file (permission denied, disk full, a path under a file) is the user's
  environment, not a bug: one line naming the file, exit 2;
* anything else is unexpected: a two-line report (what failed, where the traceback is) and exit 1.
  The traceback goes to ``<run_dir>/error.log`` when the run directory exists, else to
  ``<cache>/errors/<time>-<pid>.log`` (``$TUNESMITH_CACHE``, else ``~/.cache/tunesmith``), never to
  the console.

Every message and every traceback written passes through ``mask_text`` first, so no secret (config
secrets, secret environment values, URL passwords, known token shapes) reaches the console or a file.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from datetime import datetime
from pathlib import Path
from typing import Optional

from tunesmith.config.secrets import is_secret_key, mask_text, remember_secrets
from tunesmith.errors import Interrupted, StoppedByPeer, TunesmithError

USER_ERROR = 2  # the input was wrong; the message says which key, file or field
INTERNAL_ERROR = 1  # a bug or an unexpected failure; the traceback is in a log file


def one_line(text: str) -> str:
    """``text`` on one line: newlines become ``; `` and runs of spaces collapse.

    Example:
        >>> one_line("bad value\\n  expected 1 or 2")
        'bad value; expected 1 or 2'
    """
    parts = [" ".join(line.split()) for line in str(text).splitlines()]
    return "; ".join(p for p in parts if p)


def report_error(err: BaseException, argv: Optional[list[str]] = None) -> int:
    """Print what ``err`` means for the user on stderr and return the command's exit code.

    ``argv`` (default ``sys.argv[1:]``): the command's arguments, whose secret values are masked too.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    remember_secrets(argv_secrets(argv))  # an error may come before the config's secrets were noted
    # In a run of several processes each prints its own error: say which process it is.
    on = f" on {err.tunesmith_rank}" if getattr(err, "tunesmith_rank", None) else ""
    if isinstance(err, Interrupted):  # SIGTERM / SIGINT during training: a checkpoint was saved
        print(f"stopped: {one_line(mask_text(str(err)))}", file=sys.stderr)
        return err.exit_code
    if isinstance(err, StoppedByPeer):  # another process failed first and printed its error
        print(f"stopped: {one_line(mask_text(str(err)))}", file=sys.stderr)
        return INTERNAL_ERROR
    if isinstance(err, TunesmithError):
        print(f"error{on}: {one_line(mask_text(str(err)))}", file=sys.stderr)  # a message may quote a config value
        return USER_ERROR
    if isinstance(err, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    if isinstance(err, OSError) and (err.filename or err.filename2):
        names = " -> ".join(str(n) for n in (err.filename, err.filename2) if n)
        log = write_traceback(err, argv)
        print(f"error{on}: {mask_text(names)}: {err.strerror or type(err).__name__}"
              f"{f' (details in {log})' if log else ''}", file=sys.stderr)
        return USER_ERROR
    log = write_traceback(err, argv)
    summary = one_line(mask_text(f"{type(err).__name__}: {err}"))
    if len(summary) > 300:
        summary = summary[:297] + "..."
    where = f"the traceback is in {log}" if log else "the traceback could not be written to a file"
    print(f"internal error{on}: {summary}\n{where}; please include it when reporting the problem", file=sys.stderr)
    return INTERNAL_ERROR


_SECRET_ARG = re.compile(r"([A-Za-z0-9_.]+)\s*[:=]\s*['\"]?([^'\",}\]\s]+)")


def argv_secrets(argv: list[str]) -> list[str]:
    """Values given to secret-looking keys on the command line: ``hub_token=abc...`` or
    ``train.callback_args={notify: {api_key: abc...}}`` -> ``["abc..."]``."""
    found = []
    for arg in argv:
        for key, value in _SECRET_ARG.findall(arg):
            if is_secret_key(key.rsplit(".", 1)[-1]):
                found.append(value)
    return found


def write_traceback(err: BaseException, argv: Optional[list[str]] = None) -> Optional[Path]:
    """Write ``err``'s traceback (secrets masked) to the run directory or the error-log folder; its path.

    A run attaches its directory to an exception that leaves it as ``err.tunesmith_run_dir``.
    Returns None when no file can be written (read-only disk, ...).
    """
    text = mask_text("".join(traceback.format_exception(type(err), err, err.__traceback__)))
    args = " ".join(sys.argv[1:] if argv is None else argv)
    on = f" ({err.tunesmith_rank})" if getattr(err, "tunesmith_rank", None) else ""
    header = f"{datetime.now().isoformat(timespec='seconds')}{on} tunesmith {mask_text(args)}\n"
    for path in _candidates(err):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(header + text + "\n")
            return path
        except OSError:
            continue
    return None


def _candidates(err: BaseException) -> list[Path]:
    """Where a traceback may go, in order of preference."""
    from tunesmith.cache_dirs import cache_root
    from tunesmith.config.run_dir import RunDir

    out = []
    run_dir = getattr(err, "tunesmith_run_dir", None)
    if run_dir is not None and Path(run_dir).is_dir():
        out.append(RunDir(run_dir).error_log)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out.append(cache_root() / "errors" / f"{stamp}-{os.getpid()}.log")
    return out
