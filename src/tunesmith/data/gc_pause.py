"""Pausing Python's cyclic garbage collector while the data pipeline builds its examples.

Reading a data set creates millions of small objects that all stay alive (parsed rows, messages,
examples). The generational collector treats each burst of new objects as a reason to look for
cycles, and every so often walks all of them again: about half the CPU time of reading and
parsing a JSONL file of chat rows, and nothing found (those objects hold no reference cycles).
Worker processes forked while it is paused do not walk the parent's objects either, so they do
not copy the parent's memory pages for it. Reference counting still frees everything as usual;
only cycles wait, and the collector runs again as soon as the block ends.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """``with paused_gc(): ...``: the cyclic collector is off inside the block and back as it was
    after it (a caller that had switched it off keeps it off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
