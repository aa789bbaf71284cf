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
"""

from __future__ import annotations

import copy
import functools
import random
from collections import defaultdict
from typing import Any, Optional

from tunesmith.config.schema import UnlearningConfig
from tunesmith.errors import ConfigError, DataError
from tunesmith.training.trainers import IGNORE_INDEX, register_trainer

RETAIN = "retain_"  # prefix of the retain example's columns in a paired row or batch
OBJECTIVES = ("grad_ascent", "grad_diff", "npo")


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


def _model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k != "labels"}


@functools.lru_cache(maxsize=None)
def _trainer_class() -> type:
    """``UnlearningTrainer``, defined on first use so that importing this module stays light."""
    import torch
    import torch.nn.functional as F
    from transformers import Trainer

    class UnlearningTrainer(Trainer):
        """One subclass of ``transformers.Trainer``: its ``compute_loss`` runs the forget (and retain)
        forward passes and combines them; evaluation batches get the plain NLL."""

        loss_is_scaled_for_ga = False  # a mean per micro-batch: the Trainer divides by grad_accum

        def __init__(self, *args: Any, objective: str, settings: UnlearningConfig, reference: Any = None,
                     **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.objective, self.settings, self.reference = objective, settings, reference
            self._parts: dict[str, list[float]] = defaultdict(list)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not model.training:  # evaluation: the ordinary loss of the eval set
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            forget = {k: v for k, v in inputs.items() if not k.startswith(RETAIN)}
            outputs = model(**_model_inputs(forget))
            nll, count = sequence_nll(outputs.logits, forget["labels"])
            forget_nll = nll.sum() / count.sum().clamp(min=1)
            s = self.settings
            if self.objective == "npo":
                log_ratio = self._reference_nll(model, forget) - nll  # log p(y|x) - log p_ref(y|x)
                forget_term = -(2.0 / s.beta) * F.logsigmoid(-s.beta * log_ratio).mean()
                self._parts["npo_loss"].append(float(forget_term.detach()))
            else:
                forget_term = -forget_nll
            loss = s.forget_weight * forget_term
            self._parts["forget_loss"].append(float(forget_nll.detach()))
            if self.objective != "grad_ascent" and s.retain_weight > 0:
                retain = {k[len(RETAIN):]: v for k, v in inputs.items() if k.startswith(RETAIN)}
                r_nll, r_count = sequence_nll(model(**_model_inputs(retain)).logits, retain["labels"])
                retain_nll = r_nll.sum() / r_count.sum().clamp(min=1)
                loss = loss + s.retain_weight * retain_nll
                self._parts["retain_loss"].append(float(retain_nll.detach()))
            return (loss, outputs) if return_outputs else loss

        def _reference_nll(self, model: Any, forget: dict[str, Any]) -> Any:
            """Summed NLL of each forget answer under the model before unlearning (no gradients)."""
            inputs = _model_inputs(forget)
            with torch.no_grad():
                if self.reference is not None:
                    logits = self.reference(**inputs).logits
                else:
                    unwrapped = self.accelerator.unwrap_model(model)
                    with unwrapped.disable_adapter():
                        logits = unwrapped(**inputs).logits
            return sequence_nll(logits, forget["labels"])[0]

        def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
            """Adds the mean forget / retain losses since the last log (averaged over processes)."""
            if "loss" in logs and self._parts:
                for name, values in sorted(self._parts.items()):
                    local = torch.tensor(sum(values) / len(values), device=self.args.device)
                    logs[name] = float(self.accelerator.reduce(local, reduction="mean"))
                self._parts.clear()
            super().log(logs, start_time)

    return UnlearningTrainer


def build_unlearning_trainer(objective: str, model: Any, args: Any, train_dataset: Any, eval_dataset: Any,
                             data_collator: Any, callbacks: list[Any], processing_class: Any = None,
                             retain_dataset: Any = None, unlearning: Optional[UnlearningConfig] = None) -> Any:
    """An ``UnlearningTrainer`` for ``objective`` (one of ``OBJECTIVES``) on forget and retain sets."""
    from transformers import PrinterCallback, ProgressCallback

    settings = unlearning or UnlearningConfig()
    wants_retain = objective != "grad_ascent" and settings.retain_weight > 0
    if wants_retain and retain_dataset is None:
        raise ConfigError(f"data.retain: train.trainer={objective} needs a retain set (the examples whose "
                          "behaviour must stay), e.g. data.retain=facts-retain; or set "
                          "train.unlearning.retain_weight=0")
    reference = None
    if objective == "npo" and not hasattr(model, "disable_adapter"):
        # Full fine-tuning: the starting weights, frozen, are the reference.
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    rows = ForgetRetainRows(train_dataset, retain_dataset if wants_retain else None, args.seed)
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=rows, eval_dataset=eval_dataset,
        data_collator=ForgetRetainCollator(data_collator), callbacks=callbacks, processing_class=processing_class,
        objective=objective, settings=settings, reference=reference)
    for default in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(default)
    return trainer


@register_trainer("grad_ascent", tasks=("causal_lm",))
def build_grad_ascent_trainer(model: Any, args: Any, train_dataset: Any, eval_dataset: Any, data_collator: Any,
                              callbacks: list[Any], processing_class: Any = None, retain_dataset: Any = None,
                              unlearning: Optional[UnlearningConfig] = None) -> Any:
    """Gradient ascent on the forget set (no retain term): the simplest, least stable baseline."""
    return build_unlearning_trainer("grad_ascent", model, args, train_dataset, eval_dataset, data_collator,
                                    callbacks, processing_class, retain_dataset, unlearning)


@register_trainer("grad_diff", tasks=("causal_lm",), needs_retain=True)
def build_grad_diff_trainer(model: Any, args: Any, train_dataset: Any, eval_dataset: Any, data_collator: Any,
                            callbacks: list[Any], processing_class: Any = None, retain_dataset: Any = None,
                            unlearning: Optional[UnlearningConfig] = None) -> Any:
    """Gradient difference: ascent on the forget set, descent on the retain set."""
    return build_unlearning_trainer("grad_diff", model, args, train_dataset, eval_dataset, data_collator,
                                    callbacks, processing_class, retain_dataset, unlearning)


@register_trainer("npo", tasks=("causal_lm",), needs_retain=True)
def build_npo_trainer(model: Any, args: Any, train_dataset: Any, eval_dataset: Any, data_collator: Any,
                      callbacks: list[Any], processing_class: Any = None, retain_dataset: Any = None,
                      unlearning: Optional[UnlearningConfig] = None) -> Any:
    """Negative preference optimisation against the starting model, plus the retain-set NLL."""
    return build_unlearning_trainer("npo", model, args, train_dataset, eval_dataset, data_collator,
                                    callbacks, processing_class, retain_dataset, unlearning)
