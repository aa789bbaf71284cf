"""The attention kernel a training run uses (``train.attention``): ``AttentionChoice``, made by the run
(``tunesmith.api.choices.training.choose_attention``, whose docstring has the table of choices by
device, precision and batch layout, and why).
"""

from __future__ import annotations

from dataclasses import dataclass


PER_EXAMPLE_KERNELS = ("varlen", "segments")  # tunesmith's own kernels for padding-free rows


@dataclass(frozen=True)
class AttentionChoice:
    """The attention a run trains with: ``kernel`` is ``varlen``, ``segments``, ``sdpa``, ``eager``
    or ``flash_attention_2``; ``reason`` says in one line why (shown in the log and ``run.json``)."""

    kernel: str
    reason: str

    @property
    def sequence_boundaries(self) -> bool:
        """Whether batches should carry their examples' cumulative lengths (``varlen`` reads them)."""
        return self.kernel == "varlen"
