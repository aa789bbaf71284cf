"""Decoder layers compiled with ``torch.compile`` while training (``train.compile``).

A small model's training step on a GPU is bound by how fast the host issues kernels, not by the
arithmetic: every norm, rotary embedding, activation, cast and residual sum is a kernel of its own,
dispatched through Python and autograd one at a time. Compiling a decoder layer turns its forward
and backward into a few generated kernels (the elementwise work fused around the matrix
multiplies) called from one compiled function.

What is compiled, and how:

- **Each decoder layer, not the whole model** ("regional" compilation). The layers of a model
  share one class, so they share one compiled function: the first layer's compile serves all of
  them, and the start-up cost is one layer's, not the model's. The embeddings, the final norm and
  tunesmith's label-only loss (`tunesmith.training.losses`) stay eager; the loss picks trained
  positions by a mask, a data-dependent shape a compiled graph would break on.
- **Dynamic shapes**: padding-free rows change length every step, so the layers are compiled with
  ``dynamic=True`` and one compiled layer serves every row length, with no recompilation.
- **Only while training**: a layer runs its compiled forward only in training mode with gradients
  on. Evaluation and generation during or after training (with a KV cache, in eval mode) run the
  eager forward, and the layers' own forward is put back when training ends.
- **Attention**: the variable-length flash kernel (``varlen``) is a PyTorch custom operator that
  compiles into the graph. The per-example SDPA loop of ``segments`` reads the example boundaries
  on the host, so it runs eagerly between the compiled parts of a layer
  (``torch.compiler.disable`` in `tunesmith.training.segment_attention`).
- LoRA layers, fused (`tunesmith.training.fused_lora`) or peft's, are traced inside the layer.

`compile_unavailable` says why this machine cannot compile for a device (no TorchDynamo for this
Python, no Python headers, no Triton for CUDA, no C++ compiler for a CPU), which the run checks
before it loads the model (`tunesmith.api.choices.training.compile_layers`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import sysconfig
from typing import Any, Callable, Iterator, Optional

import torch

from tunesmith.training.instance_forward import instance_forward
from tunesmith.training.losses import _unwrap

BACKEND = "inductor"  # torch.compile's backend (tests use a cheaper one)
_COMPILED: dict[Callable[..., Any], Callable[..., Any]] = {}  # a layer class's forward -> its compiled form


def compile_unavailable(device: str) -> Optional[str]:
    """None when ``torch.compile`` can build kernels for ``device`` here, else why not, in one line.

    Example: on a machine with no C++ compiler, ``compile_unavailable("cpu")`` ->
    ``"no C++ compiler found (c++, g++ or clang++ on PATH, or $CXX), which torch.compile needs for a CPU"``.
    """
    try:
        from torch._dynamo import is_dynamo_supported
    except ImportError:
        return f"torch {torch.__version__} has no torch.compile"
    if not is_dynamo_supported():
        return f"torch {torch.__version__} cannot compile under Python {sys.version.split()[0]}"
    kind = str(device).split(":")[0]
    if kind in ("cpu", "cuda") and not _python_headers():
        return ("Python's C headers (Python.h) are not installed, and the kernels torch.compile builds "
                "include them (Debian / Ubuntu: python3-dev)")
    if kind == "cuda" and importlib.util.find_spec("triton") is None:
        return "the triton package is not installed (torch.compile builds CUDA kernels with it)"
    if kind == "cpu":
        names = [os.environ.get("CXX", ""), "c++", "g++", "clang++"]
        if not any(name and shutil.which(name) for name in names):
            return "no C++ compiler found (c++, g++ or clang++ on PATH, or $CXX), which torch.compile needs for a CPU"
    return None


def _python_headers() -> bool:
    include = sysconfig.get_paths().get("include")
    return bool(include) and os.path.exists(os.path.join(include, "Python.h"))


def decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The repeated blocks of ``model`` (inside any peft / DDP wrapper), outermost first found:
    transformers' ``GradientCheckpointingLayer`` instances, else the classes the model names in
    ``_no_split_modules``. A block inside another block is not listed (compiling the outer one
    traces it)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    inner = _unwrap(model)
    found = [m for m in inner.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not found:
        names = set(getattr(inner, "_no_split_modules", None) or ())
        found = [m for m in inner.modules() if type(m).__name__ in names]
    inside: set[int] = set()
    for block in found:
        inside.update(id(m) for m in block.modules() if m is not block)
    return [m for m in found if id(m) not in inside]


def _compiled(forward: Callable[..., Any]) -> Callable[..., Any]:
    if forward not in _COMPILED:
        _COMPILED[forward] = torch.compile(forward, dynamic=True, backend=BACKEND)
    return _COMPILED[forward]


def training_forward(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
    """A switched layer's forward: its class's forward compiled while it trains (training mode,
    gradients on), the eager one otherwise (evaluation, generation with a cache)."""
    forward = type(self).forward
    if self.training and torch.is_grad_enabled():
        return _compiled(forward)(self, *args, **kwargs)
    return forward(self, *args, **kwargs)


@contextlib.contextmanager
def compiled_layers(model: Any, enabled: bool) -> Iterator[int]:
    """While the block runs, the decoder layers of ``model`` (`decoder_layers`) train through
    ``torch.compile``; their own forward is put back afterwards. Yields how many layers were switched
    (0 when not ``enabled``)."""
    if not enabled:
        yield 0
        return
    with instance_forward(decoder_layers(model), training_forward) as switched:
        yield switched
