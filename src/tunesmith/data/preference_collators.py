"""Collators for preference, unpaired and prompt rows (see ``preference_tokenize.py`` for the rows).

Each wraps the task's own collator (``collators.build_collator``: padded, or the padding-free
``PackedCollator``), so pairs get the same padding, pad multiple and attention rules as SFT:

- `PairCollator`: B pairs -> one batch of 2B sequences, ``[chosen_1 .. chosen_B, rejected_1 ..
  rejected_B]``, so one forward pass scores both sides; ``pairs`` holds B.
- `UnpairedCollator`: the inner batch plus ``desirable`` (bool, one per example).
- prompt rows go to ``prompt_batches.PromptCollator``: prompts padded on the left (each ends at
  the last column, ready for ``generate``), plus the ``references`` as a list of text (or None).

`preference_collator(kind, inner)` picks the wrapper for an example kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

Collate = Callable[[list[dict[str, Any]]], dict[str, Any]]


@dataclass
class PairCollator:
    """Pairs -> ``inner`` on the list ``[chosen_1 .. chosen_B, rejected_1 .. rejected_B]``.

    The first B sequences of the batch are the chosen sides, the last B the rejected ones, in the
    pairs' order: sequence ``i`` and sequence ``i + B`` are one pair. With a padded inner collator
    that is rows ``i`` and ``i + B``; with the padding-free ``PackedCollator`` it is the ``i``-th
    and ``(i + B)``-th example of the one row (each restarts its ``position_ids`` at 0). Rows
    without labels (a reward model's) give ``input_ids`` only. ``pairs`` is B as a 0-d tensor
    (not a model input: trainers remove it before the forward pass).

    ``[{"chosen_input_ids": [5, 6], "chosen_labels": [-100, 6], "rejected_input_ids": [5, 7, 8],
    "rejected_labels": [-100, 7, 8]}]`` with a padded inner collator -> ``input_ids [[5, 6, p],
    [5, 7, 8]]``, ``labels [[-100, 6, -100], [-100, 7, 8]]``, ``attention_mask [[1, 1, 0],
    [1, 1, 1]]``, ``pairs 1``.
    """

    inner: Collate

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        sequences = []
        for side in ("chosen", "rejected"):
            for f in features:
                row = {"input_ids": list(f[f"{side}_input_ids"])}
                if f.get(f"{side}_labels") is not None:
                    row["labels"] = list(f[f"{side}_labels"])
                sequences.append(row)
        batch = self.inner(sequences)
        batch["pairs"] = torch.tensor(len(features))
        return batch


@dataclass
class UnpairedCollator:
    """``inner`` on the ``input_ids`` / ``labels`` of each row, plus ``desirable`` (bool, shape (B,)).

    ``[{"input_ids": [5, 6], "labels": [-100, 6], "desirable": 0}]`` -> the inner batch and
    ``desirable tensor([False])``.
    """

    inner: Collate

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.inner([{"input_ids": list(f["input_ids"]), "labels": list(f["labels"])} for f in features])
        batch["desirable"] = torch.tensor([bool(f["desirable"]) for f in features], dtype=torch.bool)
        return batch


def preference_collator(kind: str, inner: Collate) -> Collate:
    """The collator for rows of an example ``kind`` (``FormatInfo.kind``), around the task's ``inner`` one.

    ``"preference"`` -> ``PairCollator(inner)``; ``"unpaired_preference"`` -> ``UnpairedCollator(inner)``;
    ``"prompt"`` -> ``PromptCollator`` with ``inner``'s pad id; any other kind -> ``inner`` itself.
    """
    if kind == "preference":
        return PairCollator(inner)
    if kind == "unpaired_preference":
        return UnpairedCollator(inner)
    if kind == "prompt":
        pad = getattr(inner, "pad_token_id", None)
        if pad is None:
            from tunesmith.errors import ConfigError

            raise ConfigError("data.collator: prompt rows are padded with the collator's pad_token_id, and "
                              f"{type(inner).__name__} has none; use data.collator=auto")
        from tunesmith.data.prompt_batches import PromptCollator

        return PromptCollator(pad, getattr(inner, "pad_to_multiple_of", None))
    return inner
