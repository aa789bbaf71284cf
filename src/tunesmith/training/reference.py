"""The model as training started, for losses that compare against it (a KL penalty, a preference
loss), without a second copy of the model where it can be avoided.

``starting_snapshot(model)`` decides once, before the first step, how the reference is reached:

- a new adapter (every LoRA / DoRA ``B`` matrix still zero): the base with the adapter switched
  off is the starting model, so nothing is copied (returns None);
- anything else (an adapter that continues an earlier run, other adapter methods, full
  fine-tuning): a copy of the trainable weights as they are now (a few MB for LoRA; the whole
  model for full fine-tuning).

``reference_weights(model, snapshot)`` is a context manager within which ``model`` computes as
the reference: the adapter switched off, or the snapshot's tensors put in place of the trainable
weights (the storage is swapped, nothing is copied) and put back on exit. Use it under
``torch.no_grad()``::

    snapshot = starting_snapshot(model)          # once, before training
    with torch.no_grad(), reference_weights(model, snapshot):
        ref_logits = model(**inputs).logits
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch

_ZERO_AT_START = ("lora_B", "lora_embedding_B")  # LoRA / DoRA: B starts at zero, so the adapter adds nothing


def _unwrapped(model: Any) -> Any:
    """The peft (or plain) model inside DDP-style wrappers."""
    while hasattr(model, "module") and not hasattr(model, "disable_adapter") and not hasattr(model, "config"):
        model = model.module
    return model


def is_new_adapter(model: Any) -> bool:
    """Whether ``model`` is a peft model whose adapter still adds nothing: every trainable tensor is a
    LoRA-style ``B`` matrix of zeros, its ``A`` partner, or a DoRA magnitude (equal to the weight norms
    at the start)."""
    model = _unwrapped(model)
    if not hasattr(model, "disable_adapter"):
        return False
    zero_b = False
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if any(part in name for part in _ZERO_AT_START):
            if torch.count_nonzero(param.detach()).item() != 0:
                return False
            zero_b = True
        elif not any(part in name for part in ("lora_A", "lora_embedding_A", "lora_magnitude_vector")):
            return False  # modules_to_save, prompt tuning, IA3, ...: switching off is not the start
    return zero_b


def starting_snapshot(model: Any) -> Optional[dict[str, torch.Tensor]]:
    """How ``reference_weights`` reaches the starting model: None for a new adapter (switched off),
    else a detached copy of the trainable weights, by parameter name."""
    if is_new_adapter(model):
        return None
    return {name: param.detach().clone() for name, param in _unwrapped(model).named_parameters()
            if param.requires_grad}


@contextlib.contextmanager
def reference_weights(model: Any, snapshot: Optional[dict[str, torch.Tensor]]) -> Iterator[Any]:
    """Within the block ``model`` computes as the starting model (see the module docstring).

    Args:
        model: the model being trained (peft / DDP wrappers are fine).
        snapshot: ``starting_snapshot(model)`` taken before training.

    Yields:
        The unwrapped model, to call.
    """
    inner = _unwrapped(model)
    if snapshot is None:
        with inner.disable_adapter():
            yield inner
        return
    params = dict(inner.named_parameters())
    current: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for name, saved in snapshot.items():
                current[name] = params[name].data
                params[name].data = saved
        yield inner
    finally:
        with torch.no_grad():
            for name, data in current.items():
                params[name].data = data
