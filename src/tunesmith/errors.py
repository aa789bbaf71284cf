"""Error types for users: each message names the config key or file:line, the bad value and what
is allowed. The CLI prints them without a traceback."""


class TunesmithError(Exception):
    """Base class of every error tunesmith raises on purpose."""


class ConfigError(TunesmithError, ValueError):
    """A config key, value or registry name is wrong."""


class DataError(TunesmithError, ValueError):
    """A dataset file, row or column is wrong."""


class ModelError(TunesmithError, RuntimeError):
    """A model cannot be found, loaded or adapted."""


class RunDirError(TunesmithError, RuntimeError):
    """A run directory is missing, incomplete or would be overwritten."""
