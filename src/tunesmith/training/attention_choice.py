"""Which attention kernel a training run uses (``train.attention``), decided once per run.

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
from typing import Any

from tunesmith.errors import ConfigError

PER_EXAMPLE_KERNELS = ("varlen", "segments")


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


def choose_attention(setting: str, device: str, precision: str, padding_free: bool, model: Any,
                     max_length: int) -> AttentionChoice:
    """Resolve ``train.attention`` for this device, precision, batch layout and model.

    Example:
        ``choose_attention("auto", "cpu", "bf16", True, llama, 512)`` ->
        ``AttentionChoice("segments", "auto on cpu with padding-free rows: one SDPA call per example")``.

    Raises:
        ConfigError: ``varlen`` or ``segments`` asked for where it cannot run.
    """
    from tunesmith.training.segment_attention import segment_attention_unsupported
    from tunesmith.training.varlen_attention import varlen_unsupported

    kind = str(device).split(":")[0]
    if setting in PER_EXAMPLE_KERNELS:
        if not padding_free:
            raise ConfigError(f"train.attention: {setting!r} attends within each example of a padding-free row, "
                              "but these batches are padded (data.packing resolves to none or "
                              "group_by_length); use data.packing=padding_free or train.attention=auto")
        why_not = (varlen_unsupported(model, precision, max_length) if setting == "varlen"
                   else segment_attention_unsupported(model))
        if why_not:
            raise ConfigError(f"train.attention: {setting!r} cannot run here: {why_not}; use train.attention=auto")
        return AttentionChoice(setting, f"{setting} as configured")
    if setting != "auto":
        return AttentionChoice(setting, f"{setting} as configured (transformers' implementation)")
    if not padding_free:
        return AttentionChoice("sdpa", "auto with padded rows: transformers' SDPA")
    if kind == "cuda":
        why_not = varlen_unsupported(model, precision, max_length)
        if why_not is None:
            return AttentionChoice("varlen", "auto on cuda with padding-free rows: one variable-length flash "
                                             "call per layer")
        return AttentionChoice("sdpa", f"auto on cuda with padding-free rows: SDPA with a block mask "
                                       f"(varlen cannot run: {why_not})")
    why_not = segment_attention_unsupported(model)
    if why_not is None:
        return AttentionChoice("segments", f"auto on {kind} with padding-free rows: one SDPA call per example")
    return AttentionChoice("sdpa", f"auto on {kind} with padding-free rows: SDPA with a block mask "
                                   f"(per-example attention cannot run: {why_not})")
