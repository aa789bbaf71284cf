"""Speed settings of a run (the ``# speed`` keys of ``train``), applied to the model and trainer.

- ``train.logits``: ``label_only`` runs the output head only at trained positions, in chunks of
  ``train.logits_chunk`` rows (`tunesmith.training.losses`); ``full`` keeps the model's own loss.
- ``train.attention``: the attention kernel, chosen per device by the run
  (``tunesmith.api.choices.training.choose_attention``; with padding-free rows: ``varlen`` on
  CUDA, ``segments`` on a CPU; otherwise transformers' SDPA).
- ``train.lora_kernel``: ``auto`` runs each LoRA linear layer as one autograd step
  (`tunesmith.training.fused_lora`; decided by the run); ``peft`` keeps peft's layers.
- ``train.compile``: ``on`` trains each decoder layer through ``torch.compile``
  (`tunesmith.training.compiled_layers`; decided by the run).
- ``train.frozen_weights``: ``auto`` holds the frozen linear weights in bf16 while a CPU run
  trains under bf16 autocast (`frozen_linear_weights`, decided by the run); ``as_loaded`` leaves
  them as loaded.

The measured effect of each, and of the other speed-related keys (``data.packing``,
``train.precision``, ``train.optimizer``, ``train.gradient_checkpointing``,
``train.num_threads``), is in docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from tunesmith.config.schema import TrainSection
from tunesmith.training.attention_choice import AttentionChoice


def apply_speed_settings(trainer: Any, train: TrainSection) -> list[str]:
    """Configure a built trainer's label-only loss; returns notes for the user (why a setting could
    not apply). Trainers without a `LabelOnlyLoss` are left as they are."""
    from tunesmith.training.losses import LabelOnlyLoss

    notes: list[str] = []
    loss = getattr(trainer, "compute_loss_func", None)
    if hasattr(trainer, "label_only") and hasattr(trainer, "logits_chunk"):  # trainers that score whole answers
        trainer.label_only = train.logits == "label_only"
        trainer.logits_chunk = train.logits_chunk
    if isinstance(loss, LabelOnlyLoss):
        loss.chunk_rows = train.logits_chunk
        loss.enabled = train.logits == "label_only"
        if loss.enabled and loss.unsupported:
            notes.append(f"train.logits=label_only does not apply to this model ({loss.unsupported}); "
                         "the model computes logits at every position")
    if hasattr(trainer, "head_only_at_completions"):  # a trainer scoring sampled tokens (grpo)
        trainer.head_only_at_completions = train.logits == "label_only"
    return notes


# LoRA: its frozen plain Linear layers compute nothing but ``F.linear`` under autocast, and its
# checkpoints hold only the adapter. (DoRA also takes the norm of the frozen weight; quantized
# bases have no float weights; checkpoints of partial full fine-tuning hold the frozen weights.)
CASTABLE_METHODS = ("lora",)


@contextlib.contextmanager
def frozen_linear_weights(model: Any, enabled: bool) -> Iterator[int]:
    """While training, hold frozen fp32 ``nn.Linear`` weights in bf16; restore them afterwards.

    Under bf16 autocast every such matmul casts its fp32 weight to bf16 on every forward (and
    keeps the copy for the backward). Casting once gives the very same bf16 values, so the
    numbers do not change; what goes is one weight copy per layer per step. The output head is
    left alone when it shares its weight with the input embeddings, whose lookup is not autocast.

    The fp32 originals stay where they are, untouched, until training ends. When they are pages of
    the model file (transformers maps safetensors files into memory), `host_memory.page_out` hands those pages
    back to the system while the bf16 copies do the work, so the run does not hold both: for
    SmolLM2-135M about 0.4 GB less resident memory all through training. The values do not
    change; a page read again comes back from the file.
    Yields how many weights were cast (0 when not ``enabled``: the run enables it for
    ``train.frozen_weights=auto`` on a CPU under bf16 with lora and no sharding).
    """
    import torch

    if not enabled:
        yield 0
        return
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    shared = {id(p) for p in embeddings.parameters()} if embeddings is not None else set()
    saved = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (type(module) is torch.nn.Linear and weight is not None and not weight.requires_grad
                and weight.dtype == torch.float32 and id(weight) not in shared):
            saved.append((weight, weight.data))
            weight.data = weight.data.to(torch.bfloat16)
    from tunesmith.training.host_memory import page_out

    page_out([data for _, data in saved])
    try:
        yield len(saved)
    finally:
        for weight, data in saved:
            weight.data = data


@contextlib.contextmanager
def speed_context(model: Any, cast_frozen: bool, attention: AttentionChoice,
                  fused_lora: bool = False, compiled: bool = False) -> Iterator[tuple[int, int]]:
    """The settings that hold only while training: frozen weights held in bf16 (`frozen_linear_weights`),
    the per-example attention kernel of ``attention`` (``segments``:
    `tunesmith.training.segment_attention`; ``varlen``: `tunesmith.training.varlen_attention`),
    LoRA linear layers as one autograd step each (``fused_lora``: `tunesmith.training.fused_lora`)
    and decoder layers compiled (``compiled``: `tunesmith.training.compiled_layers`).
    Yields how many LoRA layers were fused and how many decoder layers compiled."""
    from tunesmith.training.compiled_layers import compiled_layers
    from tunesmith.training.fused_lora import fused_lora_layers
    from tunesmith.training.segment_attention import per_example_attention
    from tunesmith.training.varlen_attention import varlen_training_attention

    varlen = varlen_training_attention(model) if attention.kernel == "varlen" else contextlib.nullcontext()
    with frozen_linear_weights(model, cast_frozen), \
            per_example_attention(model, attention.kernel == "segments"), varlen, \
            fused_lora_layers(model, fused_lora) as fused, compiled_layers(model, compiled) as layers:
        yield fused, layers
