"""Where the examples of padding-free rows begin and end, as a variable-length attention kernel
wants them: cumulative lengths over the flattened rows.

A padding-free row holds several examples whose ``position_ids`` restart at 0; a new example
starts at a row's first token and wherever a position is not the previous one plus 1 (the rule
transformers uses for packed rows). The pad segment at the end of a row restarts at 0 too, so it
counts as an example of its own and pads attend only to pads. The collator computes this from
Python lists while it builds the batch, so the GPU never has to report it back.
"""

from __future__ import annotations

from typing import Any, Sequence


def example_lengths_in_row(positions: Sequence[int]) -> list[int]:
    """Lengths of the examples of one row: ``[0, 1, 2, 0, 1, 0]`` -> ``[3, 2, 1]``."""
    lengths: list[int] = []
    for i, p in enumerate(positions):
        if i == 0 or p != positions[i - 1] + 1:
            lengths.append(0)
        lengths[-1] += 1
    return lengths


def boundaries_from_positions(rows: Sequence[Sequence[int]]) -> dict[str, Any]:
    """The keywords transformers passes on to every attention call of a padding-free batch.

    Example:
        ``boundaries_from_positions([[0, 1, 2, 0, 1]])`` -> ``{"cu_seq_lens_q": tensor([0, 3, 5]),
        "cu_seq_lens_k": tensor([0, 3, 5]), "max_length_q": 3, "max_length_k": 3}`` (int32 tensors).
    """
    import torch

    cumulative = [0]
    longest = 0
    for positions in rows:
        for n in example_lengths_in_row(positions):
            cumulative.append(cumulative[-1] + n)
            longest = max(longest, n)
    cu = torch.tensor(cumulative, dtype=torch.int32)
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}
