"""How examples become batches: ``data.packing`` and ``data.collator`` with ``auto`` replaced.

``auto`` packing is ``padding_free`` for a causal LM whose architecture keeps the examples of a
row apart by their position ids (``PADDING_FREE_MODEL_TYPES``), else ``none``; a trainer that
scores each example as a whole gets ``none``. ``auto`` collator: ``packed`` for rows of several
examples, else the task's own (``tunesmith.data.collators.COLLATOR_BY_TASK``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from tunesmith.config.schema import PADDING_FREE_MODEL_TYPES
from tunesmith.config.vocabulary import Packing, Task, is_auto

def resolve_packing(packing: str, task: str, model_type: Optional[str] = None,
                    one_example_per_row: bool = False) -> str:
    """``data.packing`` with ``auto`` replaced (see the module docstring); other values come back as
    they are, after a check that the task and trainer allow them.

    Example:
        ``resolve_packing("auto", "causal_lm", "llama")`` -> ``"padding_free"``;
        ``resolve_packing("auto", "sequence_classification")`` -> ``"none"``.
    """
    from tunesmith.data.packing import check_packing

    if not is_auto(packing):
        return check_packing(packing, task, one_example_per_row).value
    if not one_example_per_row and task == Task.CAUSAL_LM and model_type in PADDING_FREE_MODEL_TYPES:
        return Packing.PADDING_FREE.value
    return Packing.NONE.value


def resolve_collator_name(name: str, task: str, packing: str = "none", model_type: Optional[str] = None) -> str:
    """The collator ``data.collator`` names once ``auto`` is resolved.

    ``("auto", "causal_lm", "pack")`` -> ``"packed"``; ``("auto", "causal_lm", "auto", "llama")`` ->
    ``"packed"`` (padding-free rows); ``("auto", "sequence_classification", "none")`` -> ``"classification"``.
    """
    from tunesmith.data.collators import check_collator, collator_for_task

    packing = resolve_packing(packing, task, model_type)
    if is_auto(name):
        by_task = collator_for_task(task)
        name = "packed" if Packing(packing).several_examples_per_row else by_task
    return check_collator(name, packing)


def build_collator(name: str, task: str, tokenizer: Any, packing: str = "none", device: Any = "cpu",
                   padding_side: str = "right", args: Optional[dict[str, Any]] = None,
                   model_type: Optional[str] = None,
                   sequence_boundaries: bool = False) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """``tunesmith.data.collators.build_collator`` for ``data.collator`` and ``data.packing`` values
    that may be ``auto`` (resolved with ``resolve_collator_name`` / ``resolve_packing``).

    ``build_collator("auto", "causal_lm", tok, "none", "cuda")`` ->
    ``PaddingCollator(pad_token_id=tok.pad_token_id, pad_to_multiple_of=8)``.
    """
    from tunesmith.data.collators import build_collator as build_named

    concrete = resolve_packing(packing, task, model_type)
    return build_named(resolve_collator_name(name, task, concrete, model_type), task, tokenizer, concrete, device,
                       padding_side, args, sequence_boundaries=sequence_boundaries)
