"""The device, precision and weight dtype a run uses: ``model.device``, ``train.precision`` and
``model.dtype`` with ``auto`` replaced, from what the machine offers (``tunesmith.models.precision``).

CUDA with bf16 support -> bf16, else fp16; a CPU with native bf16 instructions (AVX512_BF16 or AMX)
-> bf16 autocast (matrix multiplies about 3.8x faster than fp32 on such CPUs); otherwise fp32.
"""

from __future__ import annotations

from typing import Any

from tunesmith.config.vocabulary import Precision, is_auto
from tunesmith.models import precision as machine


def resolve_device(spec: str) -> str:
    """``auto`` -> cuda when available, else mps, else cpu; explicit choices are checked."""
    return machine.best_device() if is_auto(spec) else machine.check_device(spec)


def resolve_precision(spec: str, device: str) -> str:
    """Training precision: fp32 | bf16 | fp16 (mixed precision: weights stay in their dtype).

    ``auto`` on ``cpu``: bf16 where the CPU has native bf16 instructions, else fp32.
    """
    if not is_auto(spec):
        return Precision(machine.check_precision(spec, device)).value
    if device.startswith("cuda"):
        return (Precision.BF16 if machine.cuda_has_bf16() else Precision.FP16).value
    if device == "cpu":
        return (Precision.BF16 if machine.cpu_has_fast_bf16() else Precision.FP32).value
    return Precision.FP32.value


def weight_dtype_name(spec: str, device: str, precision: str) -> str:
    """``model.dtype`` with ``auto`` replaced: on GPUs a bf16 run loads bf16 weights (fp16: fp16); on
    the CPU the weights stay float32 and autocast runs the matrix multiplies in bf16."""
    if not is_auto(spec):
        return spec
    if device.startswith("cuda") and precision == Precision.BF16:
        return "bfloat16"
    if device.startswith("cuda") and precision == Precision.FP16:
        return "float16"
    return "float32"


def resolve_weight_dtype(spec: str, device: str, precision: str) -> Any:
    """The torch dtype of the loaded weights (see ``weight_dtype_name``)."""
    return machine.weight_dtype(weight_dtype_name(spec, device, precision))


def distributed_backend(backend: str, device: str) -> str:
    """``train.distributed.backend`` with ``auto`` replaced: nccl for CUDA processes, gloo otherwise."""
    if not is_auto(backend):
        return backend
    return "nccl" if device.startswith("cuda") else "gloo"
