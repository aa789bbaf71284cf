"""``train.memory_trim``: give the memory a training step freed back to the operating system.

With padding-free rows every step has a new row length, so the activations of each step are
tensors of new sizes. glibc's ``malloc`` serves tensors below its mmap threshold (which rises to
32 MiB after the first large free) from its heaps, and keeps freed blocks there for reuse; blocks
of ever-changing sizes fragment the heaps, and the process's resident memory keeps climbing with
each new longest row (docs/benchmarks.md, "Memory over long runs"). Calling glibc's
``malloc_trim(0)`` after every optimizer step returns the free pages of every heap to the
kernel, so the resident memory follows what the step really holds.

- ``auto``: trim after every optimizer step when the model trains on a CPU and the C library is
  glibc (Linux). On a GPU the activations live in CUDA memory, which ``malloc`` does not hold.
- ``on``: trim wherever glibc is present, whatever the device.
- ``off``: never.

Where the C library is not glibc (macOS, musl, Windows) there is no ``malloc_trim``; the run says
so in one line and in ``run.json`` (``memory.memory_trim``) and trains without it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from transformers import TrainerCallback


@dataclass(frozen=True)
class TrimPlan:
    """What ``train.memory_trim`` resolved to for this run: whether steps are trimmed, and why."""

    setting: str
    enabled: bool
    reason: str

    def describe(self) -> str:
        """``Memory trim: on (glibc malloc_trim after every optimizer step; train.memory_trim=auto on cpu)``."""
        return f"Memory trim: {'on' if self.enabled else 'off'} ({self.reason})"


def glibc_malloc_trim() -> tuple[Optional[Callable[[int], int]], str]:
    """glibc's ``malloc_trim`` and a note; ``(None, why not)`` where the C library has none.

    ``malloc_trim(pad)`` returns 1 when it gave memory back, 0 when there was none to give.
    """
    import platform

    libc_name, version = platform.libc_ver()
    if libc_name != "glibc":
        return None, f"the C library here is not glibc ({platform.system()}{', ' + libc_name if libc_name else ''})"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError) as err:
        return None, f"glibc {version} has no usable malloc_trim ({err})"
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim, f"glibc {version}"


def plan_memory_trim(setting: str, device: str) -> TrimPlan:
    """Resolve ``train.memory_trim`` (auto | on | off) for a run on ``device``.

    ``plan_memory_trim("auto", "cpu")`` on Linux -> enabled, ``"... train.memory_trim=auto on cpu"``;
    ``plan_memory_trim("auto", "cuda:0")`` -> disabled (the activations are not in malloc's heaps).
    """
    if setting == "off":
        return TrimPlan(setting, False, "train.memory_trim=off")
    if setting == "auto" and not str(device).startswith("cpu"):
        return TrimPlan(setting, False, f"train.memory_trim=auto trims on a CPU only; the model trains on {device}")
    trim, note = glibc_malloc_trim()
    if trim is None:
        return TrimPlan(setting, False, f"train.memory_trim={setting} has no effect: {note}")
    return TrimPlan(setting, True, f"{note} malloc_trim after every optimizer step; train.memory_trim={setting}"
                    + (f" on {device}" if setting == "auto" else ""))


class MemoryTrim(TrainerCallback):
    """Calls ``malloc_trim(0)`` after every optimizer step (and once when training starts, for what
    loading and tokenizing freed); counts the calls and the seconds they took, for ``run.json``.

    Args:
        trim: the C function; by default glibc's (`glibc_malloc_trim`).
    """

    def __init__(self, trim: Optional[Callable[[int], int]] = None) -> None:
        if trim is None:
            trim, note = glibc_malloc_trim()
            if trim is None:
                raise RuntimeError(f"MemoryTrim needs glibc's malloc_trim: {note}")
        self.trim = trim
        self.calls = 0
        self.released = 0  # calls that gave memory back
        self.seconds = 0.0

    def _trim(self) -> None:
        start = time.perf_counter()
        self.released += int(self.trim(0) == 1)
        self.seconds += time.perf_counter() - start
        self.calls += 1

    def on_train_begin(self, args, state, control, **kwargs):
        self._trim()

    def on_step_end(self, args, state, control, **kwargs):
        self._trim()

    def summary(self) -> dict[str, Any]:
        """``{"trims": 201, "trims_that_released": 198, "trim_seconds": 0.84}``."""
        return {"trims": self.calls, "trims_that_released": self.released, "trim_seconds": round(self.seconds, 3)}


def apply_memory_trim(trainer: Any, plan: TrimPlan) -> dict[str, Any]:
    """Add a `MemoryTrim` callback to ``trainer`` when ``plan`` is enabled; returns the record for
    ``run.json`` (filled in by `memory_record` after training)."""
    if plan.enabled:
        trainer.add_callback(MemoryTrim())
    return {"memory_trim": plan.setting, "trimmed": plan.enabled, "reason": plan.reason}


def memory_record(trainer: Any, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with the trim counts of the trainer's `MemoryTrim` callback, if it has one."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, MemoryTrim):
            return {**record, **callback.summary()}
    return record
