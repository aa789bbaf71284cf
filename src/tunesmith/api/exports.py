"""Turning a finished run into something else, with the choices a user may leave to ``auto``:
``merge_run`` (``tunesmith merge``) picks the dtype the run's weights were stored in."""

from __future__ import annotations

from pathlib import Path

from tunesmith.config.vocabulary import is_auto
from tunesmith.errors import ConfigError


def merge_run(run_dir: str | Path, out_dir: str | Path, dtype: str = "auto", overwrite: bool = False) -> Path:
    """Merge a finished run into a standalone model folder (``tunesmith.models.merge.merge_run``).

    Args:
        run_dir: a finished run directory.
        out_dir: where the model folder goes; it must be empty or missing unless ``overwrite``.
        dtype: ``auto`` (the dtype of the base checkpoint, or of a full run's weights), ``float32``,
            ``bfloat16`` or ``float16``.
        overwrite: replace a non-empty ``out_dir``.

    Raises:
        ConfigError: for an unknown ``dtype``.
        RunDirError: for a missing or unfinished run, or an ``out_dir`` that may not be written.
    """
    from tunesmith.models import merge

    if not is_auto(dtype) and dtype not in merge.MERGE_DTYPES:
        raise ConfigError(f"dtype: {dtype!r} is not allowed; allowed: auto, {', '.join(merge.MERGE_DTYPES)}")
    return merge.merge_run(run_dir, out_dir, merge.run_weights_dtype(run_dir) if is_auto(dtype) else dtype,
                           overwrite)
