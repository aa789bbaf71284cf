"""Registers the preference trainers (``dpo``, ``orpo``, ``kto``, ``reward``) and prepares what they read.

| trainer | rows | reference | loss (``tunesmith.training.preference_losses``) |
|---|---|---|---|
| ``dpo`` | pairs | yes (not with ``train.preference.loss=simpo``) | sigmoid / ipo / simpo |
| ``orpo`` | pairs | no | chosen NLL + odds-ratio term |
| ``kto`` | single answers marked desirable or not | yes | KTO |
| ``reward`` | pairs | no | Bradley-Terry on a one-output classifier's scores |

``train.preference.reference=precomputed`` scores every training (and eval) example with the
starting model once, before the first step, and stores the log-probabilities as columns
(``ref_chosen_logps`` / ``ref_rejected_logps``, or ``ref_logps``); ``ReferenceColumns`` moves them
into the batch as ``ref_logps``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from tunesmith.config.schema import PreferenceConfig
from tunesmith.config.vocabulary import Task
from tunesmith.training.trainers import register_trainer

PAIR_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
SINGLE_COLUMN = "ref_logps"
# train.preference.loss values that need no reference model (a trainer registered with reference=True
# then trains without one).
REFERENCE_FREE_LOSSES = ("simpo",)


def changed_keys(settings: Any, defaults: Any) -> list[str]:
    """The fields of a settings dataclass that differ from its defaults."""
    from dataclasses import fields

    return [f.name for f in fields(settings) if getattr(settings, f.name) != getattr(defaults, f.name)]


class ReferenceColumns:
    """Wraps a pair or unpaired collator: precomputed reference log-probabilities of the rows become
    ``batch["ref_logps"]`` (chosen answers first, then rejected, as the pair batch orders them).

    Example:
        rows ``[{"ref_chosen_logps": -3.0, "ref_rejected_logps": -5.0, ...}]`` -> ``ref_logps`` ``[-3.0, -5.0]``.
    """

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        if not rows or not any(k in rows[0] for k in (*PAIR_COLUMNS, SINGLE_COLUMN)):
            return self.collator(rows)
        if PAIR_COLUMNS[0] in rows[0]:
            values = [r[PAIR_COLUMNS[0]] for r in rows] + [r[PAIR_COLUMNS[1]] for r in rows]
        else:
            values = [r[SINGLE_COLUMN] for r in rows]
        plain = [{k: v for k, v in r.items() if k not in (*PAIR_COLUMNS, SINGLE_COLUMN)} for r in rows]
        batch = dict(self.collator(plain))
        batch["ref_logps"] = torch.tensor(values, dtype=torch.float32)
        return batch


def precompute_reference(model: Any, dataset: Any, collator: Any, batch_size: int, paired: bool, autocast: Any,
                         desc: str) -> Any:
    """``dataset`` with the starting model's log-probabilities of every answer added as columns."""
    from tunesmith.training.sequence_logps import score_sequences

    if not paired:
        return dataset.add_column(SINGLE_COLUMN, score_sequences(model, dataset, collator, batch_size, autocast, desc))
    chosen, rejected = split_pairs(score_sequences(model, dataset, collator, batch_size, autocast, desc), batch_size)
    return dataset.add_column(PAIR_COLUMNS[0], chosen).add_column(PAIR_COLUMNS[1], rejected)


def split_pairs(values: list[float], batch_size: int) -> tuple[list[float], list[float]]:
    """Chosen and rejected numbers from ``score_sequences`` over pair batches of ``batch_size`` pairs
    (each batch: its chosen answers, then its rejected ones; the last batch may be smaller).

    Example:
        >>> split_pairs([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2)
        ([1.0, 2.0, 5.0], [3.0, 4.0, 6.0])
    """
    chosen: list[float] = []
    rejected: list[float] = []
    start = 0
    while start < len(values):
        pairs = min(batch_size, (len(values) - start) // 2)
        chosen += values[start:start + pairs]
        rejected += values[start + pairs:start + 2 * pairs]
        start += 2 * pairs
    return chosen, rejected


def build_preference_trainer(cls_name: str, model: Any, args: Any, train_dataset: Any, eval_dataset: Any,
                             data_collator: Any, callbacks: list[Any], processing_class: Any = None,
                             preference: Optional[PreferenceConfig] = None, reference: Optional[str] = None) -> Any:
    """The trainer class ``cls_name`` of ``preference_trainers`` with tunesmith's collator and settings.

    ``reference``: ``adapter_off``, ``copy`` or ``precomputed`` (decided by the run, see
    ``tunesmith.api.choices.reference``); None for trainers without one.
    """
    from transformers import PrinterCallback, ProgressCallback

    from tunesmith.training import preference_trainers

    cls = getattr(preference_trainers, cls_name)
    settings = preference or PreferenceConfig()
    collator = ReferenceColumns(data_collator)
    if reference == "precomputed":
        from tunesmith.training.sequence_logps import precision_context

        paired = cls is not preference_trainers.UnpairedTrainer
        for_each = dict(batch_size=args.per_device_eval_batch_size, paired=paired, autocast=precision_context(args))
        train_dataset = precompute_reference(model, train_dataset, data_collator, desc="Reference log-probabilities",
                                             **for_each)
        if eval_dataset is not None:
            eval_dataset = precompute_reference(model, eval_dataset, data_collator,
                                                desc="Reference log-probabilities (eval)", **for_each)
    trainer = cls(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                  data_collator=collator, callbacks=callbacks, processing_class=processing_class,
                  settings=settings, reference=reference)
    for default in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(default)
    return trainer


def _factory(cls_name: str, summary: str, uses_reference: bool) -> Any:
    """A trainer factory for the ``preference_trainers`` class ``cls_name`` (see ``build_preference_trainer``)."""

    def factory(model: Any, args: Any, train_dataset: Any, eval_dataset: Any, data_collator: Any,
                callbacks: list[Any], processing_class: Any = None, preference: Optional[PreferenceConfig] = None,
                reference: Optional[str] = None) -> Any:
        return build_preference_trainer(cls_name, model, args, train_dataset, eval_dataset, data_collator, callbacks,
                                        processing_class, preference, reference if uses_reference else None)

    factory.__doc__ = summary
    factory.__name__ = factory.__qualname__ = f"build_{cls_name}"
    return factory


build_dpo_trainer = register_trainer("dpo", tasks=(Task.CAUSAL_LM,), rows="preference", settings="preference",
                                     reference=True)(_factory(
    "PairTrainer", "Direct preference optimisation on chosen / rejected pairs (``train.preference.loss``).", True))
build_orpo_trainer = register_trainer("orpo", tasks=(Task.CAUSAL_LM,), rows="preference",
                                      settings="preference")(_factory(
    "OddsRatioTrainer", "Odds-ratio preference optimisation: the chosen NLL plus an odds-ratio term; no reference.",
    False))
build_kto_trainer = register_trainer("kto", tasks=(Task.CAUSAL_LM,), rows="unpaired_preference",
                                     settings="preference", reference=True)(_factory(
    "UnpairedTrainer", "Kahneman-Tversky optimisation on answers marked desirable or undesirable.", True))
build_reward_trainer = register_trainer("reward", tasks=(Task.SEQUENCE_CLASSIFICATION,), rows="preference",
                                        settings="preference")(_factory(
    "RewardModelTrainer", "A reward model: a one-output sequence classifier trained so chosen answers score higher.",
    False))
