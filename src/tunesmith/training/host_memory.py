"""Resident memory of a CPU run that stays flat: ``train.memory_trim`` and ``train.cpu_kernel_cache``.

With padding-free rows every step has a new row length, so every step's matrix multiplies have
new shapes. Two things then grow with the number of steps (docs/benchmarks.md, "Memory over long
runs"):

- **Kernel caches.** On a CPU, torch runs bf16 matrix multiplies through oneDNN, which builds a
  kernel (a "primitive", holding its own reordered copy of the weight) per shape and caches up to
  1024 of them, in two caches (ideep's, sized by ``LRU_CACHE_CAPACITY``, and oneDNN's, by
  ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``). With a new shape every step, they fill at several MiB per
  step. ``train.cpu_kernel_cache`` (default 16) bounds both: a step reuses its kernels across all
  layers (one shape per step), so a small cache keeps that reuse, and what older steps built goes.
  Both sizes are read once per process, at the first such multiply, so `limit_kernel_caches` runs
  before the model is loaded.
- **Freed heap pages.** glibc's ``malloc`` serves tensors below its mmap threshold (which rises to
  32 MiB after the first large free) from heaps that keep freed blocks; blocks of ever-changing
  sizes fragment them. ``train.memory_trim`` calls glibc's ``malloc_trim(0)`` after every optimizer
  step, which returns the free pages of every heap to the kernel:

  - ``auto`` (decided by the run, ``tunesmith.api.choices.training.plan_memory_trim``): when the model trains on a CPU and the C library is glibc (Linux). On a GPU the
    activations live in CUDA memory, which ``malloc`` does not hold.
  - ``on``: wherever glibc is present, whatever the device.
  - ``off``: never.

  Where the C library is not glibc (macOS, musl, Windows) there is no ``malloc_trim``; the run says
  so in one line and in ``run.json`` (``memory.reason``) and trains without it.

`page_out` hands pages that a run holds but does not need back to the system (the fp32 originals
of frozen weights while their bf16 copies train, ``training.speed.frozen_linear_weights``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
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


def c_library() -> ctypes.CDLL:
    """The C library (``libc.so.6`` on Linux), for ``malloc_trim`` and ``madvise``; OSError where none loads."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def page_out(tensors: list[Any]) -> int:
    """Ask the system to take the memory pages that lie wholly inside ``tensors`` out of the
    process's resident memory (Linux ``madvise(MADV_PAGEOUT)``); returns the bytes asked for.

    Only a hint, and it never changes a value: pages read from a file are dropped and read again
    when next touched; other pages are swapped out where there is swap and otherwise stay. On a
    system without ``MADV_PAGEOUT`` (not Linux, or Linux before 5.4) it does nothing.
    """
    import mmap
    import sys

    # Python's mmap module names MADV_PAGEOUT only when it was built against Linux 5.4+ headers.
    advice = getattr(mmap, "MADV_PAGEOUT", 21 if sys.platform.startswith("linux") else None)
    if advice is None or not tensors:
        return 0
    try:
        madvise = c_library().madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    page, asked = mmap.PAGESIZE, 0
    for tensor in tensors:
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        first, last = -(-start // page) * page, end // page * page  # whole pages only
        if last > first and madvise(first, last - first, advice) == 0:
            asked += last - first
    return asked


def glibc_malloc_trim() -> tuple[Optional[Callable[[int], int]], str]:
    """glibc's ``malloc_trim`` and a note; ``(None, why not)`` where the C library has none.

    ``malloc_trim(pad)`` returns 1 when it gave memory back, 0 when there was none to give.
    """
    import platform

    libc_name, version = platform.libc_ver()
    if libc_name != "glibc":
        return None, f"the C library here is not glibc ({platform.system()}{', ' + libc_name if libc_name else ''})"
    try:
        trim = c_library().malloc_trim
    except (OSError, AttributeError) as err:
        return None, f"glibc {version} has no usable malloc_trim ({err})"
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim, f"glibc {version}"


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


# ideep's cache (torch's mkldnn bridge) and oneDNN's own; both default to 1024 kernels.
KERNEL_CACHE_VARIABLES = ("LRU_CACHE_CAPACITY", "ONEDNN_PRIMITIVE_CACHE_CAPACITY")
_applied: dict[str, int] = {}  # what this process set, for the note when a later run asks for more


def limit_kernel_caches(size: int) -> Optional[str]:
    """Bound torch's CPU kernel caches to ``size`` kernels each (``train.cpu_kernel_cache``).

    Sets ``LRU_CACHE_CAPACITY`` and ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` for this process (ideep
    caches at least one kernel, so 0 becomes 1 there). They are read once, at the first bf16
    matrix multiply on a CPU, so this runs before the model is loaded; returns a note for the user
    when the process already ran with other sizes (a second run in one Python session), else None:
    ``limit_kernel_caches(16)`` -> None, then ``limit_kernel_caches(64)`` -> ``"train.cpu_kernel_cache=64
    ... keeps 16 ..."``.
    """
    wanted = {"LRU_CACHE_CAPACITY": max(size, 1), "ONEDNN_PRIMITIVE_CACHE_CAPACITY": size}
    earlier = dict(_applied)
    replaced = [f"{name}={os.environ[name]}" for name, value in wanted.items()
                if name not in _applied and name in os.environ and os.environ[name] != str(value)]
    for name, value in wanted.items():
        os.environ[name] = str(value)
        _applied.setdefault(name, value)
    if earlier and earlier != wanted:
        return (f"train.cpu_kernel_cache={size}: this Python process already trained with "
                f"{earlier['ONEDNN_PRIMITIVE_CACHE_CAPACITY']} and keeps {earlier['ONEDNN_PRIMITIVE_CACHE_CAPACITY']} "
                "(the cache sizes are read once per process); start a new process for another size")
    if replaced:
        return (f"train.cpu_kernel_cache={size} replaces {', '.join(replaced)} from the environment; "
                "set train.cpu_kernel_cache to the size you want instead")
    return None
