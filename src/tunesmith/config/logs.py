"""What tunesmith tells its user while it works: one ``tunesmith`` logger and its console handler.

Every module logs through ``logging.getLogger(__name__)``, so all of tunesmith's lines meet under
the ``tunesmith`` logger. Importing tunesmith attaches one ``ConsoleHandler`` to that logger (never
to the root logger); the front doors (the ``tunesmith`` command, ``FineTuner``, ``tunesmith.main``)
set its level:

- ``info`` (the default): progress and status lines, written exactly as they read, on stdout;
- ``debug`` (``tunesmith -v``): also the details behind them (the resolved plan, cache keys);
- ``warning`` (``tunesmith -q``): warnings and errors only, on stderr with ``warning:`` / ``error:``.

Processes other than the main one (rank > 0) show warnings and errors only. A program that shows
log records on the console itself (``logging.basicConfig()``) receives tunesmith's records through
its own handlers, and the console handler stands aside, so no line appears twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator, Optional, Union

from tunesmith.errors import ConfigError

LOGGER_NAME = "tunesmith"
# The names a user may give for a level (FineTuner(verbosity=...), tunesmith.main(verbosity=...)).
LEVELS = {"debug": logging.DEBUG, "verbose": logging.DEBUG, "info": logging.INFO,
          "warning": logging.WARNING, "quiet": logging.WARNING, "error": logging.ERROR}
_PREFIX = {logging.DEBUG: "debug: ", logging.WARNING: "warning: ", logging.ERROR: "error: ",
           logging.CRITICAL: "error: "}


class ConsoleFormatter(logging.Formatter):
    """The message as the user reads it: no prefix at INFO, ``warning:`` / ``error:`` / ``debug:`` otherwise.

    Example:
        >>> record = logging.LogRecord("tunesmith.x", logging.WARNING, __file__, 1, "step %d: nan", (3,), None)
        >>> ConsoleFormatter().format(record)
        'warning: step 3: nan'
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record's text, with its level named unless it is INFO, and its traceback if any."""
        text = _PREFIX.get(record.levelno, "") + record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def on_main_process(record: logging.LogRecord) -> bool:
    """The rank filter: every record on rank 0, only warnings and errors on the other processes."""
    return record.levelno >= logging.WARNING or os.environ.get("RANK", "0") in ("", "0")


class ConsoleHandler(logging.Handler):
    """Writes tunesmith's records to the console: below WARNING on the *current* ``sys.stdout``,
    the rest on ``sys.stderr`` (looked up at each line, so redirections and captures see them),
    through ``tqdm.write`` while a progress bar is drawn so the bar is not torn."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(ConsoleFormatter())
        self.addFilter(on_main_process)

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record, unless the program's own root handlers already show it on the console."""
        if _root_shows_on_console():
            return
        try:
            text = self.format(record)
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            _write(text, stream)
        except Exception:  # noqa: BLE001 - logging never breaks the run; handleError reports it
            self.handleError(record)


def _write(text: str, stream) -> None:
    tqdm_module = sys.modules.get("tqdm")  # a bar can only be active when tqdm was imported
    bar = getattr(tqdm_module, "tqdm", None)
    if bar is not None and getattr(bar, "_instances", None):
        bar.write(text, file=stream)  # clears the bars, writes the line, redraws them
        return
    stream.write(text + "\n")
    stream.flush()


_CONSOLES = {"<stdout>", "<stderr>"}


def _root_shows_on_console() -> bool:
    """True when the root logger has a handler writing to stdout / stderr or a terminal (the
    program configured logging itself); records reach it by propagation."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) or not isinstance(handler, logging.StreamHandler):
            continue
        stream = handler.stream
        if stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) \
                or getattr(stream, "name", None) in _CONSOLES:
            return True
        with contextlib.suppress(Exception):
            if stream.isatty():
                return True
    return False


# Warnings other libraries give when they are imported with the hub offline, about an optional
# downloaded CPU kernel for 4-bit matmuls: bitsandbytes falls back to its own code, so nothing is
# lost, and every run would otherwise open with them (peft imports bitsandbytes). They are passed
# on at debug level (``tunesmith -v``) instead.
IMPORT_NOISE = {"bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward",
                "kernels._internals.hf_hub": "Skipping publisher trust check"}


class ImportNoise(logging.Filter):
    """Moves one library's known import-time warning (``IMPORT_NOISE``) to tunesmith's debug level."""

    def __init__(self, starts: str) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        """False (dropped here) for the known warning, which is logged at debug level instead."""
        if record.getMessage().startswith(self.starts):
            logging.getLogger(LOGGER_NAME).debug("%s: %s", record.name, record.getMessage())
            return False
        return True


def install_console() -> logging.Logger:
    """Attach the console handler to the ``tunesmith`` logger once (idempotent); returns that logger."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        logger.addHandler(ConsoleHandler())
        for name, starts in IMPORT_NOISE.items():
            logging.getLogger(name).addFilter(ImportNoise(starts))
    return logger


def parse_level(value: Union[str, int, None], key: str = "verbosity") -> Optional[int]:
    """A level number for ``value``: a name of ``LEVELS``, a ``logging`` level number, or None.

    Example:
        >>> parse_level("quiet"), parse_level("debug"), parse_level(None)
        (30, 10, None)
    """
    if value is None or (isinstance(value, int) and not isinstance(value, bool)
                         and value in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)):
        return value
    if isinstance(value, str) and value.lower() in LEVELS:
        return LEVELS[value.lower()]
    raise ConfigError(f"{key}: {value!r} is not a verbosity; use one of {', '.join(LEVELS)} "
                      "(or logging.DEBUG / INFO / WARNING / ERROR)")


def set_verbosity(value: Union[str, int, None], key: str = "verbosity") -> int:
    """Set what the ``tunesmith`` logger passes on; returns the level it had before (0: never set).

    None sets ``info`` the first time and otherwise keeps the level a front door set earlier (a
    ``FineTuner`` made inside ``tunesmith train -q`` stays quiet).
    """
    level = parse_level(value, key)
    logger = install_console()
    previous = logger.level
    if level is None:
        level = previous or logging.INFO
    logger.setLevel(level)
    return previous


@contextlib.contextmanager
def verbosity(value: Union[str, int, None], key: str = "verbosity") -> Iterator[None]:
    """Within the block the ``tunesmith`` logger has this level; the earlier one comes back afterwards."""
    previous = set_verbosity(value, key)
    try:
        yield
    finally:
        logging.getLogger(LOGGER_NAME).setLevel(previous)


def quiet_this_process() -> None:
    """Warnings and errors only from this process (the replicas of a multi-process run)."""
    install_console().setLevel(max(logging.getLogger(LOGGER_NAME).getEffectiveLevel(), logging.WARNING))


def show_progress() -> bool:
    """Whether progress bars are drawn: on rank 0, unless a front door set the ``tunesmith`` logger
    above INFO (``-q``, ``verbosity="quiet"``); a library call before any front door draws them."""
    logger = logging.getLogger(LOGGER_NAME)
    shown = logger.level == logging.NOTSET or logger.isEnabledFor(logging.INFO)
    return shown and os.environ.get("RANK", "0") in ("", "0")
