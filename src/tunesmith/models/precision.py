"""Choosing the device and the numeric precision a run uses.

CUDA with bf16 support -> bf16; a CPU with native bf16 instructions (AVX512_BF16 or AMX) -> bf16
autocast (matrix multiplies about 3.8x faster than fp32 on such CPUs); otherwise fp32.
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


def resolve_device(spec: str) -> str:
    """``auto`` -> cuda when available, else mps, else cpu; explicit choices are checked."""
    import torch

    if spec == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"model.device: {spec!r} was asked for but CUDA is not available here; use cpu or auto")
    if spec == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("model.device: 'mps' was asked for but MPS is not available here; use cpu or auto")
    return spec


def resolve_precision(spec: str, device: str) -> str:
    """Training precision: fp32 | bf16 | fp16 (mixed precision: weights stay in their dtype)."""
    import torch

    if spec != "auto":
        if spec == "fp16" and device == "cpu":
            raise ConfigError("train.precision: 'fp16' is not supported on the CPU; use bf16 or fp32")
        if spec == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.precision: this GPU has no bf16 support; use fp16 or fp32")
        return spec
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def resolve_weight_dtype(spec: str, device: str, precision: str):
    """Dtype of the loaded weights. On GPUs a bf16 run loads bf16 weights; on the CPU the weights
    stay fp32 and autocast runs the matrix multiplies in bf16."""
    import torch

    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if spec != "auto":
        return names[spec]
    if device.startswith("cuda") and precision == "bf16":
        return torch.bfloat16
    if device.startswith("cuda") and precision == "fp16":
        return torch.float16
    return torch.float32
