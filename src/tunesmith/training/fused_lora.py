"""LoRA linear layers in one autograd step each (``train.lora_kernel=fused``).

peft computes ``base(x) + lora_B(lora_A(dropout(x))) * scaling`` as separate operations: under
autocast each matrix multiply casts its input and weight again, and the sum and the scaling are
passes of their own, each an autograd node. One LoRA layer of a bf16 run is then 20 operators
forward and backward, and keeps two bf16 copies of its input for the backward. On a CPU those extra
passes over the activations are time; on a GPU, where a small model's step is bound by how fast
kernels are launched, they are launches.

`LoraLinearFunction` does the same maths with one cast of the input and of each adapter, the
same matrix multiplies (three forward, the scaled low-rank product accumulated into the base
output by ``addmm``; five backward, the scaling carried by ``addmm``'s ``alpha``) and no separate
scaling or sum, and keeps one copy of the input: 12 operators per layer and step where peft's
layer dispatches 20 (``bench/lora_ops.py``). The values are those of peft's layer up to the rounding
of bf16 (the low-rank term is added inside the matrix multiply instead of after it); in fp32 they
agree to float rounding. `fused_lora_layers` switches a model's plain LoRA linear layers to it while
training and puts peft's forward back afterwards, so evaluation, merging and saved adapters are
peft's own. A layer in any state this path does not cover (adapters disabled or merged, several
active adapters, DoRA, a LoRA bias, a trainable base weight, per-call arguments such as
``adapter_names``) runs peft's forward for that call.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator, Optional

import torch

from tunesmith.training.instance_forward import instance_forward


class LoraLinearFunction(torch.autograd.Function):
    """``x @ W.T (+ bias) + scaling * (xd @ A.T) @ B.T`` in ``dtype``, with ``xd`` the dropped-out input
    (``None``: ``x`` itself). The base weight is frozen; gradients go to ``x``, ``xd``, ``A``, ``B`` and a
    trainable bias, each only when asked for."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, xd: Optional[torch.Tensor], weight: torch.Tensor,
                bias: Optional[torch.Tensor], lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float,
                dtype: torch.dtype) -> torch.Tensor:
        lead = x.shape[:-1]
        with torch.autocast(x.device.type, enabled=False):
            xc = x.reshape(-1, x.shape[-1]).to(dtype)
            xdc = xc if xd is None else xd.reshape(-1, xd.shape[-1]).to(dtype)
            a, b = lora_a.to(dtype), lora_b.to(dtype)  # cast once a step, kept for the backward (r x width)
            hidden = xdc @ a.t()
            if bias is None:
                out = xc @ weight.to(dtype).t()
            else:
                out = torch.addmm(bias.to(dtype), xc, weight.to(dtype).t())
            out.addmm_(hidden, b.t(), alpha=scaling)
        ctx.save_for_backward(xc, None if xd is None else xdc, hidden, weight, a, b)
        ctx.scaling, ctx.dtype, ctx.x_dtype = scaling, dtype, x.dtype
        ctx.a_dtype, ctx.b_dtype = lora_a.dtype, lora_b.dtype
        ctx.xd_dtype = None if xd is None else xd.dtype
        ctx.bias_dtype, ctx.lead = None if bias is None else bias.dtype, lead
        return out.reshape(*lead, out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Optional[torch.Tensor], ...]:
        xc, xdc, hidden, weight, a, b = ctx.saved_tensors
        need_x, need_xd, _, need_bias, need_a, need_b = ctx.needs_input_grad[:6]
        dtype, scaling = ctx.dtype, ctx.scaling
        grad_x = grad_xd = grad_bias = grad_a = grad_b = None
        with torch.autocast(grad.device.type, enabled=False):
            g = grad.reshape(-1, grad.shape[-1]).to(dtype)
            # addmm's ignored input (beta=0): the scaling rides in alpha; a compiled layer makes its own
            zero = g.new_zeros(()) if torch.compiler.is_compiling() else _zero(g.device, dtype)
            grad_hidden = (torch.addmm(zero, g, b, beta=0, alpha=scaling) if (need_x or need_xd or need_a)
                           else None)
            if need_x:
                grad_x = g @ weight.to(dtype)
                if xdc is None and ctx.x_dtype == dtype:
                    grad_x.addmm_(grad_hidden, a)
                elif xdc is None:  # a wider input (fp32 under autocast): the two parts add up in its dtype, as in peft
                    grad_x = grad_x.to(ctx.x_dtype).add_(grad_hidden @ a)
                grad_x = grad_x.to(ctx.x_dtype).reshape(*ctx.lead, -1)
            if need_xd and xdc is not None:
                grad_xd = (grad_hidden @ a).to(ctx.xd_dtype).reshape(*ctx.lead, -1)
            if need_a:
                grad_a = (grad_hidden.t() @ (xc if xdc is None else xdc)).to(ctx.a_dtype)
            if need_b:
                grad_b = torch.addmm(zero, g.t(), hidden, beta=0, alpha=scaling).to(ctx.b_dtype)
            if need_bias and ctx.bias_dtype is not None:
                grad_bias = g.sum(dim=0, dtype=ctx.bias_dtype)
        return grad_x, grad_xd, None, grad_bias, grad_a, grad_b, None, None


@functools.lru_cache(maxsize=None)
def _zero(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros((), device=device, dtype=dtype)


def fusable(module: Any) -> bool:
    """Whether ``module`` is one of peft's LoRA linear layers over a plain ``torch.nn.Linear`` (not a
    quantized, convolutional or custom base layer): the layers `fused_lora_layers` switches."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    return type(module) is LoraLinear and type(getattr(module, "base_layer", None)) is torch.nn.Linear


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor, lora_a: torch.Tensor,
                   lora_b: torch.Tensor) -> Optional[torch.dtype]:
    """The dtype the layer's matrix multiplies run in: autocast's where it is on for ``x``'s device;
    otherwise ``x``'s, when every weight has it too (peft would mix dtypes otherwise: None)."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    if x.dtype == weight.dtype == lora_a.dtype == lora_b.dtype:
        return x.dtype
    return None


def _fused_adapter(layer: Any, x: torch.Tensor) -> Optional[str]:
    """The one active adapter of ``layer`` when `LoraLinearFunction` covers this call, else None."""
    if layer.disable_adapters or layer.merged or not x.is_floating_point() or len(layer.active_adapters) != 1:
        return None
    name = layer.active_adapters[0]
    if name not in layer.lora_A or name in layer.lora_variant:
        return None
    if layer.base_layer.weight.requires_grad or layer.lora_B[name].bias is not None:
        return None
    return name


def fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """The forward of a switched layer: `LoraLinearFunction` when the layer's state allows it, else
    peft's own forward (its class's) for this call."""
    name = None if args or kwargs else _fused_adapter(self, x)
    base = self.base_layer
    lora_a, lora_b = (self.lora_A[name], self.lora_B[name]) if name is not None else (None, None)
    dtype = None if name is None else _compute_dtype(x, base.weight, lora_a.weight, lora_b.weight)
    if dtype is None:
        return type(self).forward(self, x, *args, **kwargs)
    dropout = self.lora_dropout[name]
    inactive = isinstance(dropout, torch.nn.Identity) or (
        isinstance(dropout, torch.nn.Dropout) and (not dropout.training or dropout.p == 0))
    xd = None if inactive else dropout(x)
    return LoraLinearFunction.apply(x, xd, base.weight, base.bias, lora_a.weight, lora_b.weight,
                                    float(self.scaling[name]), dtype)


@contextlib.contextmanager
def fused_lora_layers(model: Any, enabled: bool) -> Iterator[int]:
    """While the block runs, the plain LoRA linear layers of ``model`` (`fusable`) compute their
    forward and backward with `LoraLinearFunction`; peft's forward is put back afterwards. Yields how
    many layers were switched (0 when not ``enabled``)."""
    if not enabled:
        yield 0
        return
    with instance_forward((m for m in model.modules() if fusable(m)), fused_forward) as switched:
        yield switched
