"""The attention kernel a training run uses (``train.attention``): ``AttentionChoice``, made by the run
(``tunesmith.api.choices.training.choose_attention``).

The choice depends on the device, the precision and whether batches are padding-free (several
examples in one row, kept apart by ``position_ids``):

| ``train.attention`` | padding-free rows | padded rows |
|---|---|---|
| ``auto`` on CUDA, bf16/fp16 | ``varlen``: one variable-length flash call per layer | ``sdpa`` |
| ``auto`` on CUDA, fp32 | ``sdpa`` with transformers' block mask | ``sdpa`` |
| ``auto`` elsewhere (CPU, MPS) | ``segments``: one SDPA call per example | ``sdpa`` |
| ``varlen`` / ``segments`` | that kernel, or an error saying why it cannot run | an error |
| ``sdpa`` / ``eager`` / ``flash_attention_2`` | transformers' implementation of that name | the same |

Why per device: the per-example loop of ``segments`` costs ``sum(n_i**2)`` instead of ``L**2`` and
wins on a CPU, where each kernel call is cheap; on a GPU each call is a launch, and a row of 30
examples in 30 layers becomes about 2,000 launches per step (docs/benchmarks.md has both
measurements). ``varlen`` does the same work in one launch per layer, but its flash kernel exists
only on CUDA and only for half-precision inputs.
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
