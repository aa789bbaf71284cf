"""Error types for users: each message names the config key or file:line, the bad value and what
is allowed. The CLI prints them without a traceback."""

from __future__ import annotations


class TunesmithError(Exception):
    """Base class of every error tunesmith raises on purpose."""


class ConfigError(TunesmithError, ValueError):
    """A config key, value or registry name is wrong."""


class DataError(TunesmithError, ValueError):
    """A dataset file, row or column is wrong.

    ``reason`` is an optional short key (``"invalid JSON"``, ``"missing column"``) under which
    ``data.on_bad_rows=skip`` counts the row; see ``tunesmith.data.bad_rows``.
    """

    def __init__(self, *args: object, reason: str | None = None) -> None:
        super().__init__(*args)
        self.reason = reason


class ModelError(TunesmithError, RuntimeError):
    """A model cannot be found, loaded or adapted."""


class RunDirError(TunesmithError, RuntimeError):
    """A run directory is missing, incomplete or would be overwritten."""


class TrainingError(TunesmithError, RuntimeError):
    """Training cannot go on: a NaN/inf loss or gradient, a checkpoint that cannot be written, a
    resume that does not match the config. The message says what happened and what to do."""


class Interrupted(TunesmithError):
    """Training stopped on SIGTERM / SIGINT after saving a checkpoint; ``exit_code`` is 143 or 130."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StoppedByPeer(TunesmithError):
    """In a run of several processes, another process failed first; this one stopped with it, at once
    and without saving a checkpoint. The message names the failed process (its own error is shown once,
    by that process)."""
