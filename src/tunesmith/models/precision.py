"""What the machine offers for the device and numeric precision of a run, and checks of a chosen one.

The choice itself (``model.device``, ``train.precision`` and ``model.dtype`` left at ``auto``) is
made in ``tunesmith.api.choices.runtime`` from these facts.
"""

from __future__ import annotations

import functools
from pathlib import Path

from tunesmith.errors import ConfigError


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when /proc/cpuinfo lists avx512_bf16 or amx_bf16 (Linux x86); False elsewhere."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def best_device() -> str:
    """The fastest device this machine has: ``cuda`` when available, else ``mps``, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cuda_has_bf16() -> bool:
    """Whether the current GPU computes in bf16."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def is_device_name(spec: str) -> bool:
    """Whether ``spec`` names a device: ``cpu``, ``mps``, ``cuda`` or ``cuda:N``."""
    return spec in ("cpu", "mps", "cuda") or (spec.startswith("cuda:") and spec[5:].isdigit())


def check_device(spec: str) -> str:
    """``spec`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``) after a check that this machine has it."""
    import torch

    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"model.device: {spec!r} was asked for but CUDA is not available here; use cpu or auto")
    if spec == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("model.device: 'mps' was asked for but MPS is not available here; use cpu or auto")
    return spec


def check_precision(spec: str, device: str) -> str:
    """``spec`` (fp32 | bf16 | fp16; mixed precision: weights stay in their dtype) after a check that
    ``device`` computes in it."""
    if spec == "fp16" and device == "cpu":
        raise ConfigError("train.precision: 'fp16' is not supported on the CPU; use bf16 or fp32")
    if spec == "bf16" and device.startswith("cuda") and not cuda_has_bf16():
        raise ConfigError("train.precision: this GPU has no bf16 support; use fp16 or fp32")
    return spec


WEIGHT_DTYPES = ("float32", "bfloat16", "float16")  # the concrete values of model.dtype


def weight_dtype(name: str):
    """The torch dtype ``model.dtype`` names: ``"bfloat16"`` -> ``torch.bfloat16``."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
