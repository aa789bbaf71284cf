"""Console output with secrets masked: whatever a command prints (progress lines, data notes, paths,
a library's own ``print``) passes through ``mask_text`` on its way to stdout / stderr.

Log records are masked where they are made (``config/secrets.py``); this covers what is printed
directly. Text is masked one ``write`` at a time, which is how ``print`` hands over a line.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

from tunesmith.config.secrets import mask_text


class MaskedStream:
    """A text stream that masks secrets in what is written and passes everything else to ``stream``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write ``text`` with secrets masked; returns the length of ``text`` (as callers expect)."""
        self._stream.write(mask_text(text) if isinstance(text, str) else text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        """Write each line, masked."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, ...
        return getattr(self._stream, name)


@contextlib.contextmanager
def masked_console() -> Iterator[None]:
    """Within the block, ``sys.stdout`` and ``sys.stderr`` mask secrets (restored afterwards)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = MaskedStream(sys.stdout), MaskedStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
