"""Memory and throughput of a training run, logged next to ``metrics.jsonl`` for the run report.

``ResourceLog`` is a Trainer callback: at every log step it appends one JSON line to
``resources.jsonl`` (resident memory of the process, CUDA memory when a GPU is used, tokens seen
and tokens per second since the previous line), and at the end of training it keeps a summary that
the run record (``run.json``) stores::

    {"peak_rss_mb": 1834.2, "peak_cuda_mb": null, "tokens_seen": 40960, "tokens_per_s": 141.3}
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any, Optional

from transformers import TrainerCallback

_MB = 1024 * 1024


def current_rss_mb() -> Optional[float]:
    """Resident memory of this process now, in MiB (None where ``/proc`` is not available)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024  # the kernel reports kB
    except OSError:
        return None
    return None


def peak_rss_mb() -> float:
    """The highest resident memory this process has reached so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux but in bytes on macOS.
    return peak / _MB if sys.platform == "darwin" else peak / 1024


def cuda_memory_mb() -> tuple[Optional[float], Optional[float]]:
    """(allocated now, peak since the last reset) of the current CUDA device in MiB; (None, None) without CUDA."""
    torch = sys.modules.get("torch")  # training has imported it; never import it just to look
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None, None
    return torch.cuda.memory_allocated() / _MB, torch.cuda.max_memory_allocated() / _MB


class ResourceLog(TrainerCallback):
    """Appends memory and throughput at every log step to ``path``; ``summary()`` after training.

    Args:
        path: the JSON-lines file to append to (usually ``RunDir(run_dir).resources_file``).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.start = time.perf_counter()
        self.last_time = self.start
        self.tokens_at_start = 0
        self.last_tokens = 0
        self.tokens_seen = 0
        self.seconds = 0.0
        self.peak_cuda: Optional[float] = None

    def on_train_begin(self, args, state, control, **kwargs):
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()  # the peak of training, not of loading or evaluating
        self.start = self.last_time = time.perf_counter()
        self.tokens_at_start = self.last_tokens = int(state.num_input_tokens_seen or 0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Training-step logs only: eval logs and the end-of-training summary add no tokens, and
        # their near-zero tokens/s would read as a slowdown.
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        now = time.perf_counter()
        tokens = int(state.num_input_tokens_seen or 0)
        cuda_now, cuda_peak = cuda_memory_mb()
        if cuda_peak is not None:
            self.peak_cuda = max(self.peak_cuda or 0.0, cuda_peak)
        # Tokens per second over the interval since the previous line, so slow phases show up.
        interval = now - self.last_time
        record: dict[str, Any] = {
            "step": state.global_step,
            "elapsed_s": round(now - self.start, 3),
            "tokens_seen": tokens - self.tokens_at_start,
            "tokens_per_s": round((tokens - self.last_tokens) / interval, 2) if interval > 0 else None,
            "rss_mb": _round(current_rss_mb()),
            "peak_rss_mb": _round(peak_rss_mb()),
            "cuda_allocated_mb": _round(cuda_now),
            "cuda_peak_mb": _round(cuda_peak),
        }
        self.last_time, self.last_tokens = now, tokens
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.start
        self.tokens_seen = int(state.num_input_tokens_seen or 0) - self.tokens_at_start
        _, cuda_peak = cuda_memory_mb()
        if cuda_peak is not None:
            self.peak_cuda = max(self.peak_cuda or 0.0, cuda_peak)

    def summary(self) -> dict[str, Any]:
        """Peak memory (MiB) and training throughput (non-padding tokens per second) of the run."""
        return {
            "peak_rss_mb": _round(peak_rss_mb()),
            "peak_cuda_mb": _round(self.peak_cuda),
            "tokens_seen": self.tokens_seen,
            "tokens_per_s": round(self.tokens_seen / self.seconds, 2) if self.seconds > 0 else None,
        }


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 1)


def resource_summary(callbacks: list[Any]) -> dict[str, Any]:
    """``ResourceLog.summary()`` of the first ``ResourceLog`` among a trainer's callbacks ({} if none)."""
    for callback in callbacks:
        if isinstance(callback, ResourceLog):
            return callback.summary()
    return {}
