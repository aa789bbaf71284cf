"""Speed settings of a run (the ``# speed`` keys of ``train``), applied to the model and trainer.

- ``train.logits``: ``label_only`` runs the output head only at trained positions, in chunks of
  ``train.logits_chunk`` rows (`tunesmith.training.losses`); ``full`` keeps the model's own loss.
- ``train.attention``: the attention kernel the model is loaded with (``auto`` lets transformers
  pick: SDPA wherever the architecture supports it).

The measured effect of each, and of the other speed-related keys (``data.packing``,
``train.precision``, ``train.optimizer``, ``train.gradient_checkpointing``,
``train.num_threads``), is in docs/benchmarks.md.
"""

from __future__ import annotations

from typing import Any

from tunesmith.config.schema import TrainSection
from tunesmith.errors import ConfigError


def attention_kwargs(attention: str, device: str) -> dict[str, Any]:
    """``from_pretrained`` keywords for ``train.attention``.

    ``attention_kwargs("auto", "cpu")`` -> ``{}``; ``attention_kwargs("eager", "cpu")`` ->
    ``{"attn_implementation": "eager"}``. ``flash_attention_2`` needs a CUDA device (and the
    flash-attn package, which transformers checks when loading).
    """
    if attention == "auto":
        return {}
    if attention == "flash_attention_2" and not str(device).startswith("cuda"):
        raise ConfigError(f"train.attention: 'flash_attention_2' runs on CUDA GPUs only, not on {device!r}; "
                          "use auto, sdpa or eager")
    return {"attn_implementation": attention}


def apply_speed_settings(trainer: Any, train: TrainSection) -> list[str]:
    """Configure a built trainer's label-only loss; returns notes for the user (why a setting could
    not apply). Trainers without a `LabelOnlyLoss` are left as they are."""
    from tunesmith.training.losses import LabelOnlyLoss

    notes: list[str] = []
    loss = getattr(trainer, "compute_loss_func", None)
    if isinstance(loss, LabelOnlyLoss):
        loss.chunk_rows = train.logits_chunk
        loss.enabled = train.logits == "label_only"
        if loss.enabled and loss.unsupported:
            notes.append(f"train.logits=label_only does not apply to this model ({loss.unsupported}); "
                         "the model computes logits at every position")
    return notes
