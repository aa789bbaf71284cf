"""Batches of prompts for trainers that sample the answers themselves (``train.trainer=grpo``).

A prompt row is ``{"prompt_ids": [...], "reference": "7" | None}``: the prompt rendered with the
chat template up to the assistant's turn. The batch pads the prompts on the left, so every prompt
ends at the last column and generation continues all of them at once; the references stay a
list (the Trainer passes values that are not tensors through untouched).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from tunesmith.errors import DataError


@dataclass
class PromptCollator:
    """Left-pads ``prompt_ids`` and keeps the references as a list.

    ``{"prompt_ids": [5, 6, 7], "reference": "3"}`` and ``{"prompt_ids": [8], "reference": None}``
    become ``prompt_ids [[5, 6, 7], [p, p, 8]]``, ``prompt_attention_mask [[1, 1, 1], [0, 0, 1]]``,
    ``references ["3", None]`` (p = pad id).

    Args:
        pad_token_id: the id padding positions hold (masked either way).
        pad_to_multiple_of: round the padded length up to a multiple of this (GPUs); None: no rounding.
    """

    pad_token_id: int
    pad_to_multiple_of: Optional[int] = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        for i, row in enumerate(rows):
            if "prompt_ids" not in row:
                raise DataError(f"train.trainer=grpo: batch row {i} has no 'prompt_ids' (it has "
                                f"{', '.join(sorted(row)) or 'no columns'}); grpo trains on prompt rows "
                                "{'prompt_ids': [...], 'reference': ...}, e.g. data=arith-prompts")
        prompts = [list(row["prompt_ids"]) for row in rows]
        longest = max(len(p) for p in prompts)
        if self.pad_to_multiple_of:
            longest = (longest + self.pad_to_multiple_of - 1) // self.pad_to_multiple_of * self.pad_to_multiple_of
        ids = [[self.pad_token_id] * (longest - len(p)) + p for p in prompts]
        mask = [[0] * (longest - len(p)) + [1] * len(p) for p in prompts]
        return {"prompt_ids": torch.tensor(ids, dtype=torch.long),
                "prompt_attention_mask": torch.tensor(mask, dtype=torch.long),
                "references": [row.get("reference") for row in rows]}
