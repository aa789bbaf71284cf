"""Collators: lists of tokenized examples -> padded tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.data.tokenize import IGNORE_INDEX


@dataclass
class PaddingCollator:
    """Right-pads each batch to its longest example (dynamic padding).

    ``{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}`` and ``{"input_ids": [5], "labels": [5]}``
    become ``input_ids [[5, 6, 7], [5, p, p]]``, ``labels [[-100, 6, 7], [5, -100, -100]]``,
    ``attention_mask [[1, 1, 1], [1, 0, 0]]`` (p = pad id). ``pad_to_multiple_of`` rounds the
    length up, which helps tensor cores on GPUs.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        ids, labels, mask = [], [], []
        for f in features:
            pad = longest - len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
        }
