"""Fitting token sequences into ``data.max_length``: ``drop``, ``truncate_end`` or ``truncate_prompt``.

Pure list functions (no tokenizer), so each rule is easy to test on its own:

- ``drop``: a sequence longer than ``max_length`` is left out.
- ``truncate_end``: keep the first ``max_length`` tokens (the end of the answer may be lost).
- ``truncate_prompt``: cut the earliest prompt tokens (after a leading BOS, which is kept) and
  never a trained one, so the whole answer survives; when the trained part alone does not fit,
  the sequence is left out.

The caller counts every outcome; a cut that leaves no trained token counts as too long.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

IGNORE_INDEX = -100  # the label of a token that is not trained (PyTorch's cross-entropy ignore_index)
TRUNCATIONS = ("drop", "truncate_end", "truncate_prompt")

Outcome = Literal["fits", "truncated_end", "truncated_prompt", "too_long"]


@dataclass
class Fitted:
    """A sequence after fitting, and what happened to it."""

    input_ids: list[int]
    labels: list[int]
    outcome: Outcome


def fit_to_length(
    input_ids: list[int], labels: list[int], max_length: int, truncation: str, keep_first: int = 0
) -> Fitted:
    """Fit one sequence into ``max_length`` tokens.

    ``[1, 2, 3, 4, 5]`` with labels ``[-100, -100, -100, 4, 5]`` and ``max_length=3``:
    ``truncate_end`` -> ``[1, 2, 3]`` (no trained token: the caller drops it);
    ``truncate_prompt`` -> ``[3, 4, 5]`` with labels ``[-100, 4, 5]``. ``keep_first`` leading
    tokens (a BOS) are never cut by ``truncate_prompt``.
    """
    n = len(input_ids)
    if n <= max_length:
        return Fitted(input_ids, labels, "fits")
    if truncation == "truncate_end":
        return Fitted(input_ids[:max_length], labels[:max_length], "truncated_end")
    if truncation == "truncate_prompt":
        excess = n - max_length
        first_trained = next((i for i, t in enumerate(labels) if t != IGNORE_INDEX), n)
        if keep_first + excess <= first_trained and keep_first < max_length:
            cut = slice(keep_first, keep_first + excess)
            ids, lab = list(input_ids), list(labels)
            del ids[cut], lab[cut]
            return Fitted(ids, lab, "truncated_prompt")
    return Fitted(input_ids, labels, "too_long")
