"""Quantized bases for ``peft.method=qlora`` (4-bit) and ``int8`` (8-bit), through bitsandbytes.

Loading: ``quantization_kwargs`` gives the ``from_pretrained`` keyword arguments. Training:
``prepare_quantized_for_training`` readies the frozen base before adapters go on. Merging:
``dequantized_state_dict`` turns the 4-bit/8-bit weights back into floats; adapters are merged into
those, never into the quantized weights.

Why the CPU guard exists (bitsandbytes 0.50, ``nn/modules.py`` ``Linear4bit.forward`` and
``autograd/_functions.py`` ``matmul_4bit``): on a CPU with AVX512-BF16, the first forward of a
``Linear4bit`` in eval mode with an input that does not require grad (any ``torch.no_grad``
evaluation or generation; ``from_pretrained`` returns the model in eval mode) repacks the weight, in
place and for good, into a CPU-only layout. From then on every forward, training ones included, goes
to the ``gemv_4bit`` kernel, which has no autograd formula: the forward stays right but the gradient
through the frozen base is silently dropped (LoRA gradients off by 50-75% on a 2-layer test model).
``guard_cpu_packed_weights`` turns that repacking off for a model being trained.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from tunesmith.config.schema import PeftConfig
from tunesmith.errors import ModelError

logger = logging.getLogger(__name__)

QUANTIZED_METHODS = ("qlora", "int8")
INSTALL_HINT = "pip install bitsandbytes"
_GUARD_ATTR = "_tunesmith_autograd_guard"  # set on a Linear4bit once its pre-hook is registered


def is_quantized_method(method: str) -> bool:
    """True for the fine-tuning methods that train on a quantized base: ``qlora`` and ``int8``."""
    return method in QUANTIZED_METHODS


def import_bitsandbytes(method: str = "qlora") -> Any:
    """Import bitsandbytes, or raise ``ModelError`` that says how to install it."""
    try:
        import bitsandbytes
    except ImportError as err:
        raise ModelError(
            f"peft.method={method!r} loads the base model quantized and needs the optional package "
            f"bitsandbytes, which is not installed; install it with: {INSTALL_HINT} "
            f"(or choose peft.method=lora) ({err})"
        ) from err
    return bitsandbytes


def quantization_kwargs(peft_cfg: PeftConfig, device: str) -> dict[str, Any]:
    """Keyword arguments for ``from_pretrained`` that load the base quantized for ``peft_cfg.method``.

    Args:
        peft_cfg: the ``peft`` section; ``method`` picks 4-bit (qlora) or 8-bit (int8), and
            ``quantization`` holds the 4-bit settings.
        device: the resolved device (``"cpu"``, ``"cuda:0"``, ...).

    Returns:
        ``{"quantization_config": BitsAndBytesConfig(...), "device_map": {"": device}}`` for
        qlora/int8; ``{}`` for every other method. The device map makes bitsandbytes quantize the
        weights on ``device`` itself rather than on the CPU followed by a move.

    Raises:
        ModelError: qlora/int8 without bitsandbytes installed.
    """
    if not is_quantized_method(peft_cfg.method):
        return {}
    import_bitsandbytes(peft_cfg.method)
    import torch
    from transformers import BitsAndBytesConfig

    if peft_cfg.method == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        q = peft_cfg.quantization
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=q.quant_type,
            bnb_4bit_use_double_quant=q.double_quant,
            # Inputs are cast to this dtype and each weight is dequantized into it for the matmul.
            bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype),
        )
    return {"quantization_config": config, "device_map": {"": device}}


def _bnb_layer_types() -> tuple[type, type]:
    import bitsandbytes as bnb

    return bnb.nn.Linear4bit, bnb.nn.Linear8bitLt


def prepare_quantized_for_training(model: Any, method: str) -> Any:
    """Ready a 4-bit/8-bit base for adapter training; call it before ``apply_adapter``.

    Does what ``peft.prepare_model_for_kbit_training`` does without gradient checkpointing: freezes
    every base parameter and casts fp16/bf16 parameters that are not 4-bit (norms, embeddings, the
    head) to fp32 so their small updates and reductions keep precision. Then it keeps 4-bit layers
    on the autograd-correct path (``guard_cpu_packed_weights``). Other methods: ``model`` unchanged.

    Gradient checkpointing is not turned on here (peft's default turns it on): it recomputes every
    layer's forward in the backward, which on a 4-bit base means one more forward and one more
    dequantization of every weight per step, to save activation memory that CPU runs and the small
    models tunesmith targets rarely lack. Turn it on in the trainer when memory is short;
    transformers 5 then makes the input embeddings require grad itself, so that is not done here
    either (without checkpointing it only adds a backward through layer 0 into frozen embeddings).

    Args:
        model: a transformers model loaded with ``quantization_kwargs`` and no adapter yet.
        method: ``peft.method``.

    Returns:
        The same model, prepared in place.

    Raises:
        ModelError: the model already carries adapters, or it was not loaded quantized.
    """
    if not is_quantized_method(method):
        return model
    if hasattr(model, "peft_config"):
        # Freezing every parameter would freeze the adapter too.
        raise ModelError("prepare_quantized_for_training: the model already has an adapter; "
                         "prepare the quantized base before apply_adapter")
    import_bitsandbytes(method)
    linear4, linear8 = _bnb_layer_types()
    wanted = linear4 if method == "qlora" else linear8
    if not any(isinstance(m, wanted) for m in model.modules()):
        raise ModelError(f"peft.method={method!r}: the model has no {wanted.__name__} layers; load it "
                         "with tunesmith.models.quantization.quantization_kwargs(...)")
    from peft import prepare_model_for_kbit_training

    prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    guard_cpu_packed_weights(model)
    return model


def _is_packed(module: Any) -> bool:
    return bool(getattr(module.weight.quant_state, "packing_format_for_cpu", False))


def _unpack_for_cpu(data: Any, quant_state: Any) -> tuple[Any, Any]:
    """Undo bitsandbytes' CPU repacking: (packed data, state) -> (standard data, state)."""
    from bitsandbytes import functional

    inverse = getattr(functional, "_convert_weight_packed_for_cpu_inverse", None)
    if inverse is None:
        raise ModelError("this bitsandbytes version repacked a 4-bit weight for the CPU but has no "
                         "_convert_weight_packed_for_cpu_inverse to undo it; install bitsandbytes 0.50.x")
    return inverse(data, quant_state)


def _restore_autograd_path(module: Any) -> None:
    """Put a repacked 4-bit layer back in the standard layout (which the gradient path needs)."""
    # The repacking stored the block scales in bf16, and undoing it re-quantizes them (double
    # quant): the dequantized weight moves by about 0.1% relative, once.
    module.weight.data, module.weight.quant_state = _unpack_for_cpu(module.weight.data, module.weight.quant_state)
    module.quant_state = module.weight.quant_state


def _grad_guard_hook(module: Any, args: tuple) -> None:
    """Forward pre-hook: a repacked layer about to record a graph goes back to the standard layout."""
    import torch

    if torch.is_grad_enabled() and _is_packed(module):
        logger.warning("a 4-bit layer was repacked for CPU inference during training; restoring the "
                       "standard layout so gradients flow through it")
        _restore_autograd_path(module)


def guard_cpu_packed_weights(model: Any) -> int:
    """Keep every 4-bit layer of ``model`` on bitsandbytes' autograd-correct matmul path.

    Turns off the CPU inference repacking (see the module docstring), undoes it where an earlier
    no-grad evaluation already applied it, and registers a forward pre-hook that undoes it again
    whenever a layer is found repacked while autograd is recording. Inference-only code should not
    call this: the repacked kernel is the faster one for generation. Calling it twice is harmless.

    Returns:
        The number of 4-bit layers guarded.
    """
    linear4, _ = _bnb_layer_types()
    count = 0
    for module in model.modules():
        if not isinstance(module, linear4):
            continue
        # Linear4bit.forward repacks only while this attribute (set from the CPU flags) is true.
        module.support_avx512bf16_for_cpu = False
        if _is_packed(module):
            _restore_autograd_path(module)
        if getattr(module, _GUARD_ATTR, None) is None:
            setattr(module, _GUARD_ATTR, module.register_forward_pre_hook(_grad_guard_hook))
        count += 1
    return count


def _dequantize_4bit(module: Any, dtype: Any) -> Any:
    from bitsandbytes import functional

    data, state = module.weight.data, module.weight.quant_state
    if _is_packed(module):
        # Unpack a shallow copy of the state: the inverse rebinds the state's fields, and the
        # module (maybe in use for inference) keeps its fast layout.
        data, state = _unpack_for_cpu(data, copy.copy(state))
    return functional.dequantize_4bit(data, state).to(dtype)


def _dequantize_8bit(module: Any, dtype: Any) -> Any:
    import torch
    from bitsandbytes import functional

    weight = module.weight
    if weight.dtype != torch.int8:  # has_fp16_weights: the float weight is kept as it is
        return weight.detach().to(dtype)
    # Row scales: on the parameter after loading, on the layer state after the first forward.
    scb = getattr(weight, "SCB", None)
    if scb is None:
        scb = module.state.SCB
    if scb is None:
        raise ModelError("an 8-bit layer has no row scales (SCB); it was never quantized")
    # weight[i, j] = int8[i, j] * SCB[i] / 127
    return functional.int8_vectorwise_dequant(weight.data, scb.to(weight.device)).to(dtype)


def dequantized_state_dict(model: Any, dtype: Any = None) -> dict[str, Any]:
    """``model.state_dict()`` with every bitsandbytes 4-bit/8-bit weight dequantized to floats.

    Keys are the ``state_dict`` keys minus bitsandbytes' quantization-state entries
    (``...weight.absmax``, ``...SCB``, ...), so the result loads into the same architecture built
    unquantized. Other tensors are returned as they are (detached). The model is not changed:
    unlike ``state_dict()``, a 4-bit weight repacked for CPU inference is unpacked on a copy.

    Args:
        model: a transformers (or peft-wrapped) model loaded through bitsandbytes.
        dtype: dtype of the dequantized weights; default ``torch.float32``.

    Example:
        ``{"model.layers.0.mlp.up_proj.weight": <uint8 [8192, 1]>, ...}`` ->
        ``{"model.layers.0.mlp.up_proj.weight": <float32 [128, 64]>, ...}``
    """
    import torch

    bnb = import_bitsandbytes()
    dtype = dtype or torch.float32
    linear4, linear8 = bnb.nn.Linear4bit, bnb.nn.Linear8bitLt
    out: dict[str, Any] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        for key, param in module._parameters.items():
            if param is None:
                continue
            if key == "weight" and isinstance(module, linear4):
                out[prefix + key] = _dequantize_4bit(module, dtype)
            elif key == "weight" and isinstance(module, linear8):
                out[prefix + key] = _dequantize_8bit(module, dtype)
            else:
                out[prefix + key] = param.detach()
        for key, buf in module._buffers.items():
            if buf is not None and key not in module._non_persistent_buffers_set:
                out[prefix + key] = buf.detach()
    return out
