"""The reference model of preference and RL training: the model as training starts, frozen.

DPO's implicit reward ``beta * log(p(y|x) / p_ref(y|x))``, KTO's and GRPO's KL penalty compare the
trained model with it. No second model is loaded:

| choice | what the reference is | extra memory |
|---|---|---|
| ``adapter_off`` | the base with the (new) adapter switched off | none |
| ``copy`` | the trainable weights as they were at the start, swapped in while the reference runs | one copy of the trainable weights (the adapter only, with LoRA) |
| ``precomputed`` | log-probabilities computed once before training (``PrecomputedLogps``) | two numbers per example |

With ``auto`` the run picks (``tunesmith.api.choices.reference``): ``adapter_off`` for a new adapter, ``copy`` when the run
continues an adapter (``model.adapter``: switching it off would compare with the bare base, not
the starting model). Full fine-tuning must choose, since ``copy`` doubles its trainable memory.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from tunesmith.errors import ConfigError

CHOICES = ("adapter_off", "copy", "precomputed")  # the references a run can use


def check_reference(choice: str, method: str, key: str = "train.preference.reference") -> str:
    """``choice`` (``adapter_off``, ``copy`` or ``precomputed``) after a check that the run can use it
    with ``peft.method=method``.

    Example: ``check_reference("adapter_off", "full")`` raises ``ConfigError`` (no adapter to switch off).
    """
    if choice not in CHOICES:
        raise ConfigError(f"{key}: {choice!r} is not allowed; choose one of auto, {', '.join(CHOICES)}")
    if choice == "adapter_off" and method == "full":
        raise ConfigError(f"{key}: adapter_off needs an adapter, but peft.method=full; choose copy or precomputed")
    return choice


class Reference:
    """Runs the reference model: ``with reference.active(model) as ref: ref(**inputs)`` (no gradients).

    Args:
        model: the model being trained (peft or plain; inside DDP is fine).
        choice: ``adapter_off`` or ``copy`` (``precomputed`` needs no model at all).
    """

    def __init__(self, model: Any, choice: str) -> None:
        if choice not in ("adapter_off", "copy"):
            raise ValueError(f"a Reference runs adapter_off or copy, not {choice!r}")
        self.choice = choice
        # copy: the starting values of every trainable weight (frozen weights are the same anyway).
        self.snapshot = ([(p, p.detach().clone()) for p in model.parameters() if p.requires_grad]
                         if choice == "copy" else [])

    @contextlib.contextmanager
    def active(self, model: Any) -> Iterator[Any]:
        """Within the block ``model`` computes the reference's outputs, under ``torch.no_grad``."""
        import torch

        with torch.no_grad():
            if self.choice == "adapter_off":
                inner = _peft_model(model)
                with inner.disable_adapter():
                    yield model
                return
            current = [p.data for p, _ in self.snapshot]
            for p, start in self.snapshot:
                p.data = start
            try:
                yield model
            finally:
                for (p, _), now in zip(self.snapshot, current):
                    p.data = now


def _peft_model(model: Any) -> Any:
    """The peft model inside DDP-style wrappers."""
    while not hasattr(model, "disable_adapter") and hasattr(model, "module"):
        model = model.module
    if not hasattr(model, "disable_adapter"):
        raise ConfigError("train.preference.reference: adapter_off needs a LoRA / DoRA model; this one has no adapter")
    return model
