"""Unlearning trainers: make a causal LM forget ``data.train`` (the forget set) while keeping its
behaviour on ``data.retain`` (the retain set).

| trainer | loss per micro-batch |
|---|---|
| ``grad_ascent`` | ``-w_f * NLL_forget`` |
| ``grad_diff`` | ``-w_f * NLL_forget + w_r * NLL_retain`` |
| ``npo`` | ``w_f * (2/beta) * mean(-log sigmoid(-beta * (log p(y|x) - log p_ref(y|x)))) + w_r * NLL_retain`` |

NLL is the mean next-token loss per trained token; ``log p(y|x)`` is the summed log-likelihood of a
forget answer. NPO (negative preference optimisation) compares the model with a frozen reference:
the model before unlearning. With an adapter that is the base with the adapter switched off (no
extra memory); with full fine-tuning, a frozen copy of the starting weights (twice the memory).
``w_f``, ``w_r`` and ``beta`` are ``train.unlearning.forget_weight`` / ``retain_weight`` / ``beta``.

Each optimizer step pairs forget examples with retain examples drawn (seeded) from the retain set.
The logs gain ``forget_loss`` and ``retain_loss`` (mean NLL per token), next to the combined ``loss``.
The methods are ``Trainer`` subclasses, each overriding one term of the loss
(``tunesmith.training.unlearning_methods``: ``GradAscent`` -> ``GradDiff`` -> ``NPO``); this module
holds the paired rows and batches, and registers them under their names.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, Optional

from tunesmith.config.schema import UnlearningConfig
from tunesmith.errors import ConfigError, DataError
from tunesmith.training.trainers import IGNORE_INDEX, register_trainer

RETAIN = "retain_"  # prefix of the retain example's columns in a paired row or batch


class ForgetRetainRows:
    """Row ``i``: forget example ``i`` plus a retain example under ``retain_*`` keys.

    The retain example is drawn from a generator seeded by (seed, i, how often row ``i`` was read),
    so every epoch pairs a forget example with a new retain example, reproducibly.

    Example:
        >>> rows = ForgetRetainRows([{"input_ids": [1]}], [{"input_ids": [7]}, {"input_ids": [8]}], seed=0)
        >>> sorted(rows[0])
        ['input_ids', 'retain_input_ids']
    """

    def __init__(self, forget: Any, retain: Optional[Any], seed: int) -> None:
        if len(forget) == 0:
            raise DataError("data.train: the forget set is empty")
        if retain is not None and len(retain) == 0:
            raise DataError("data.retain: the retain set is empty")
        self.forget, self.retain, self.seed = forget, retain, seed
        self._reads: dict[int, int] = defaultdict(int)

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = dict(self.forget[i])
        if self.retain is not None:
            draw = random.Random(f"{self.seed}:{i}:{self._reads[i]}").randrange(len(self.retain))
            self._reads[i] += 1
            row.update({RETAIN + key: value for key, value in self.retain[draw].items()})
        return row


class ForgetRetainCollator:
    """Pads the forget and the retain halves of paired rows separately with the task's collator."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = dict(self.collator([{k: v for k, v in r.items() if not k.startswith(RETAIN)} for r in rows]))
        if rows and RETAIN + "input_ids" in rows[0]:
            retain = self.collator([{k[len(RETAIN):]: v for k, v in r.items() if k.startswith(RETAIN)} for r in rows])
            batch.update({RETAIN + k: v for k, v in retain.items()})
        return batch


def sequence_nll(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Per-sequence summed next-token NLL (nats) and trained-token counts, from unshifted labels.

    ``labels [[-100, 7, 8]]``: the logits at positions 0 and 1 are scored against 7 and 8 (count 2).
    """
    import torch.nn.functional as F

    targets = labels[:, 1:].to(logits.device)
    token_nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                ignore_index=IGNORE_INDEX, reduction="none").view(targets.shape)
    return token_nll.sum(-1), (targets != IGNORE_INDEX).sum(-1)


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch without its labels (the unlearning losses score the logits themselves)."""
    return {k: v for k, v in batch.items() if k != "labels"}


def build_unlearning_trainer(method: str, model: Any, args: Any, train_dataset: Any, eval_dataset: Any,
                             data_collator: Any, callbacks: list[Any], processing_class: Any = None,
                             retain_dataset: Any = None, unlearning: Optional[UnlearningConfig] = None) -> Any:
    """The unlearning trainer class ``method`` (``GradAscent``, ``GradDiff``, ``NPO``) on forget and retain sets."""
    from transformers import PrinterCallback, ProgressCallback

    from tunesmith.training import unlearning_methods

    cls = getattr(unlearning_methods, method)
    settings = unlearning or UnlearningConfig()
    wants_retain = cls.uses_retain and settings.retain_weight > 0
    if wants_retain and retain_dataset is None:
        raise ConfigError(f"data.retain: train.trainer={cls.name} needs a retain set (the examples whose "
                          "behaviour must stay), e.g. data.retain=facts-retain; or set "
                          "train.unlearning.retain_weight=0")
    rows = ForgetRetainRows(train_dataset, retain_dataset if wants_retain else None, args.seed)
    trainer = cls(model=model, args=args, train_dataset=rows, eval_dataset=eval_dataset,
                  data_collator=ForgetRetainCollator(data_collator), callbacks=callbacks,
                  processing_class=processing_class, settings=settings, **cls.extra_inputs(model))
    for default in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(default)
    return trainer


@register_trainer("grad_ascent", tasks=("causal_lm",), takes_retain=True)
def build_grad_ascent_trainer(model: Any, args: Any, train_dataset: Any, eval_dataset: Any, data_collator: Any,
                              callbacks: list[Any], processing_class: Any = None, retain_dataset: Any = None,
                              unlearning: Optional[UnlearningConfig] = None) -> Any:
    """Gradient ascent on the forget set (no retain term): the simplest, least stable baseline."""
    return build_unlearning_trainer("GradAscent", model, args, train_dataset, eval_dataset, data_collator,
                                    callbacks, processing_class, retain_dataset, unlearning)


@register_trainer("grad_diff", tasks=("causal_lm",), needs_retain=True)
def build_grad_diff_trainer(model: Any, args: Any, train_dataset: Any, eval_dataset: Any, data_collator: Any,
                            callbacks: list[Any], processing_class: Any = None, retain_dataset: Any = None,
                            unlearning: Optional[UnlearningConfig] = None) -> Any:
    """Gradient difference: ascent on the forget set, descent on the retain set."""
    return build_unlearning_trainer("GradDiff", model, args, train_dataset, eval_dataset, data_collator,
                                    callbacks, processing_class, retain_dataset, unlearning)


# NPO scores each forget answer as a whole, so its rows hold one example each.
@register_trainer("npo", tasks=("causal_lm",), needs_retain=True, one_example_per_row=True)
def build_npo_trainer(model: Any, args: Any, train_dataset: Any, eval_dataset: Any, data_collator: Any,
                      callbacks: list[Any], processing_class: Any = None, retain_dataset: Any = None,
                      unlearning: Optional[UnlearningConfig] = None) -> Any:
    """Negative preference optimisation against the starting model, plus the retain-set NLL."""
    return build_unlearning_trainer("NPO", model, args, train_dataset, eval_dataset, data_collator,
                                    callbacks, processing_class, retain_dataset, unlearning)
