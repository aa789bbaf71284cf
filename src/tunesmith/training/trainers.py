"""Trainers registered by name (``train.trainer``). Each returns a ``transformers.Trainer``."""

from __future__ import annotations

from typing import Any, Callable

from tunesmith.registry import Registry

TrainerFactory = Callable[..., Any]
TRAINERS: Registry[TrainerFactory] = Registry("trainer", key="train.trainer")


@TRAINERS.register("sft")
def build_sft_trainer(model: Any, args: Any, train_dataset: Any, eval_dataset: Any, data_collator: Any,
                      callbacks: list[Any], processing_class: Any = None) -> Any:
    """Supervised fine-tuning of a causal LM on (input_ids, labels); the model computes the loss,
    normalised by the number of trained tokens across the accumulated batch."""
    from transformers import PrinterCallback, ProgressCallback, Trainer

    trainer = Trainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      data_collator=data_collator, callbacks=callbacks, processing_class=processing_class)
    for default in (PrinterCallback, ProgressCallback):  # replaced by tunesmith's progress bar
        trainer.remove_callback(default)
    return trainer
