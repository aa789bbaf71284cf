"""Trainers registered by name (``train.trainer``). Each returns a ``transformers.Trainer``.

| name | task | loss |
|---|---|---|
| ``sft`` | causal_lm | next-token NLL summed over trained tokens / trained tokens in the accumulated batch |
| ``seq2seq`` | seq2seq | target-token NLL summed / target tokens in the accumulated batch |
| ``classification`` | sequence_classification | cross-entropy summed / examples in the accumulated batch |
| ``grad_ascent``, ``grad_diff``, ``npo`` | causal_lm | unlearning (``tunesmith.training.unlearning``) |
| ``grpo`` | causal_lm | policy gradient on sampled completions scored by reward functions (``tunesmith.training.grpo``) |
| ``dpo``, ``orpo``, ``kto`` | causal_lm | preference losses (``tunesmith.training.preference``) |
| ``reward`` | sequence_classification | chosen scored above rejected (``tunesmith.training.preference``) |

``train.trainer=auto`` is chosen by the model's task in ``tunesmith.api.choices.task``
(``default_trainer``): the trainer registered with ``default_for=<task>``.

Users add their own with ``register_trainer``::

    from tunesmith.training import register_trainer

    @register_trainer("my_sft", tasks=("causal_lm",))
    def build_my_sft(model, args, train_dataset, eval_dataset, data_collator, callbacks, processing_class=None):
        return transformers.Trainer(model=model, args=args, ...)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional

from tunesmith.config.shapes import TRAINER_NAMES
from tunesmith.config.vocabulary import Rows, Task
from tunesmith.errors import ConfigError
from tunesmith.registry import Registry

TrainerFactory = Callable[..., Any]
# tunesmith calls a trainer factory with these keywords, plus ``train.trainer_args``. The last ones
# (OPTIONAL_INPUTS) reach only factories whose signature names them (the model's task; unlearning
# data and settings; preference settings and reference; grpo settings and reward functions).
OPTIONAL_INPUTS = ("task", "retain_dataset", "unlearning", "preference", "reference", "grpo", "rewards")
TRAINER_INPUTS = ("model", "args", "train_dataset", "eval_dataset", "data_collator", "callbacks", "processing_class",
                  *OPTIONAL_INPUTS)
# What a trainer's rows hold, by the data's example kind: examples (input_ids, labels: conversations,
# text, ...), preference (chosen_* / rejected_*), unpaired_preference (input_ids, labels, desirable) or
# prompt (prompt_ids, reference).
ROWS = tuple(r.value for r in Rows)
SETTINGS_SECTIONS = ("preference", "grpo")  # config sections a trainer may read besides train.*
def _own_name(name: str, factory: TrainerFactory) -> TrainerFactory:
    """Refuse the unlearning toolkits' trainer names: configs already read them as tunesmith's."""
    if name in TRAINER_NAMES:
        raise ConfigError(f"train.trainer: '{name}' already means tunesmith's '{TRAINER_NAMES[name]}' trainer "
                          f"(train.trainer={name} selects it); register your trainer under another name")
    return factory


TRAINERS: Registry[TrainerFactory] = Registry("trainer", key="train.trainer", provided=TRAINER_INPUTS,
                                              adapt=_own_name)
# The registry under the name Hydra-based toolkits give it: ``TRAINER_REGISTRY["GradAscent"] = MyTrainer``
# (a transformers.Trainer subclass is a factory: it is called with the TRAINER_INPUTS it accepts).
TRAINER_REGISTRY = TRAINERS
IGNORE_INDEX = -100  # label of positions that are not trained (see tunesmith.data.tokenize)


@dataclass(frozen=True)
class TrainerTraits:
    """What a run must know about a trainer before the model is loaded (registry metadata).

    Attributes:
        tasks: model tasks it trains; None: any.
        takes_retain: it trains on a forget set (``data.train``) and takes a retain set (``data.retain``).
        needs_retain: it cannot train without the retain set (unless ``train.unlearning.retain_weight=0``).
        one_example_per_row: it scores each example as a whole, so rows are never packed.
        rows: what its dataset rows hold (``ROWS``); the data must be of that kind.
        settings: the config section it reads besides ``train.*`` (``preference``: ``train.preference.*``,
            ``grpo``: ``train.grpo.*``), or None.
        reference: it compares with the starting model (a reference model), unless its loss needs none.
        default_for: the task whose ``train.trainer=auto`` it is, or None.
    """

    tasks: Optional[tuple[str, ...]] = None
    takes_retain: bool = False
    needs_retain: bool = False
    one_example_per_row: bool = False
    rows: str = "examples"
    settings: Optional[str] = None
    reference: bool = False
    default_for: Optional[str] = None


def register_trainer(name: str, *, tasks: Optional[tuple[str, ...]] = None, needs_retain: bool = False,
                     takes_retain: bool = False, one_example_per_row: bool = False, rows: str = "examples",
                     settings: Optional[str] = None, reference: bool = False, default_for: Optional[str] = None,
                     overwrite: bool = False) -> Callable[[TrainerFactory], TrainerFactory]:
    """Decorator: register a trainer factory as ``train.trainer=<name>``.

    Args:
        name: the registered name.
        tasks: model tasks it trains (``causal_lm``, ``seq2seq``, ``sequence_classification``);
            None: any. A run whose model has another task fails before the model is loaded.
        needs_retain: the factory trains on a forget set and a retain set (``data.retain``), and
            cannot do without the retain set.
        takes_retain: the factory accepts a retain set but trains without one too.
        one_example_per_row: the factory scores each example as a whole (rows are never packed).
        rows: what its rows hold: ``examples`` (input_ids, labels), ``preference`` (chosen / rejected
            pairs), ``unpaired_preference`` (answers marked desirable or not) or ``prompt`` (prompts to answer).
        settings: the config section it reads besides ``train.*``: ``preference`` or ``grpo``; None: neither
            (setting one of its keys for this trainer is then an error).
        reference: it compares with the starting model (``train.preference.reference``), unless its loss
            (``train.preference.loss=simpo``) needs none.
        default_for: the task (``causal_lm``, ...) whose ``train.trainer=auto`` this trainer is.
        overwrite: replace a trainer already registered under ``name``.
    """
    if rows not in ROWS:
        raise ValueError(f"register_trainer({name!r}): rows={rows!r}; choose one of {', '.join(ROWS)}")
    if settings not in (None, *SETTINGS_SECTIONS):
        raise ValueError(f"register_trainer({name!r}): settings={settings!r}; choose one of "
                         f"{', '.join(SETTINGS_SECTIONS)} or None")
    traits = TrainerTraits(tuple(str(t) for t in tasks) if tasks else None, takes_retain or needs_retain,
                           needs_retain, one_example_per_row, rows, settings, reference,
                           str(default_for) if default_for is not None else None)

    def add(factory: TrainerFactory) -> TrainerFactory:
        TRAINERS.register(name, factory, overwrite=overwrite, meta=traits)
        return factory

    return add


def trainer_traits(name: str) -> TrainerTraits:
    """The traits ``name`` was registered with; a trainer added otherwise (``TRAINER_REGISTRY[name] = cls``,
    a dotted path) may state them as class attributes ``trainer_tasks`` and ``needs_retain``."""
    traits = TRAINERS.meta(name)
    if traits is not None:
        return traits
    factory = TRAINERS.get(name)
    tasks = getattr(factory, "trainer_tasks", None)
    needs = bool(getattr(factory, "needs_retain", False))
    return TrainerTraits(tuple(tasks) if tasks else None, needs, needs)


def trainers_by_task() -> dict[str, str]:
    """Each task's default trainer: the one registered with ``default_for`` that task.

    Example: ``trainers_by_task()["seq2seq"]`` -> ``"seq2seq"``.
    """
    return {traits.default_for: name for name in TRAINERS.names()
            if (traits := TRAINERS.meta(name)) is not None and traits.default_for is not None}


def check_trainer_task(name: str, task: str) -> str:
    """``name`` after a check that the trainer trains ``task`` models; a mismatch is a ConfigError."""
    tasks = trainer_traits(name).tasks
    if tasks is not None and task not in tasks:
        default = trainers_by_task().get(task)
        raise ConfigError(f"train.trainer: '{name}' trains {' / '.join(tasks)} models, but this model is "
                          f"{task}; use train.trainer=auto (here: {default}) or set model.task")
    return name


def check_trainer_factory(name: str) -> None:
    """Raise ``ConfigError`` when ``train.trainer`` names something that cannot be a trainer factory:
    not callable, or not taking the ``model`` and ``args`` keywords tunesmith passes (``builtins:len``).
    """
    factory = TRAINERS.get(name)
    shown = f"train.trainer: {name!r}"
    needs = ("a function or class called as factory(model=..., args=..., train_dataset=..., eval_dataset=..., "
             "data_collator=..., callbacks=..., processing_class=...) that returns a transformers.Trainer")
    if not callable(factory):
        raise ConfigError(f"{shown} is a {type(factory).__name__}, not a trainer factory; expected {needs}")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        raise ConfigError(f"{shown} has no signature to call it by, so it is not a trainer factory; "
                          f"expected {needs}") from None
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    keywords = {p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [k for k in ("model", "args") if k not in keywords and not takes_any]
    if missing:
        raise ConfigError(f"{shown} does not take the keyword(s) {', '.join(missing)}, so it is not a trainer "
                          f"factory; expected {needs}")


def build_trainer(name: str, trainer_args: dict[str, Any], task: str, **inputs: Any) -> Any:
    """The trainer ``name`` (a registered name, checked against ``task``) built with ``trainer_args`` and ``inputs``.

    ``inputs`` holds ``TRAINER_INPUTS``; ``OPTIONAL_INPUTS`` (``task``, ``retain_dataset``,
    ``unlearning``, ``grpo``, ``rewards``) are passed only to factories whose signature takes them,
    so a user's seven-argument factory still works.
    """
    factory = TRAINERS.build(check_trainer_task(name, task), trainer_args)
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    optional = {name: inputs.pop(name, None) for name in OPTIONAL_INPUTS}
    optional["task"] = task
    inputs.update({k: v for k, v in optional.items() if k in params or takes_any})
    trainer = factory(**inputs)
    if not (callable(getattr(trainer, "train", None)) and hasattr(trainer, "callback_handler")):
        raise ConfigError(f"train.trainer: {name!r} returned {type(trainer).__name__}, not a transformers.Trainer; "
                          "a trainer factory must return a Trainer (or a subclass)")
    return trainer


def _without_default_printers(trainer: Any) -> Any:
    from transformers import PrinterCallback, ProgressCallback

    for default in (PrinterCallback, ProgressCallback):  # replaced by tunesmith's progress bar
        trainer.remove_callback(default)
    return trainer


@register_trainer("sft", tasks=(Task.CAUSAL_LM,), default_for=Task.CAUSAL_LM)
def build_sft_trainer(model: Any, args: Any, train_dataset: Any, eval_dataset: Any, data_collator: Any,
                      callbacks: list[Any], processing_class: Any = None) -> Any:
    """Supervised fine-tuning of a causal LM on (input_ids, labels): next-token loss summed over
    trained tokens / trained tokens in the accumulated batch, with the output head run only at
    trained positions (``train.logits``, `tunesmith.training.losses`)."""
    from transformers import PrinterCallback, ProgressCallback

    from tunesmith.training.losses import LabelOnlyLoss, LabelOnlyLossTrainer

    trainer = LabelOnlyLossTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                                   data_collator=data_collator, callbacks=callbacks, processing_class=processing_class,
                                   compute_loss_func=LabelOnlyLoss(model))
    for default in (PrinterCallback, ProgressCallback):  # replaced by tunesmith's progress bar
        trainer.remove_callback(default)
    return trainer


def token_sum_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Cross-entropy summed over every labelled position, divided by ``num_items_in_batch``.

    For encoder-decoders, whose labels line up with the logits (the decoder input is the labels
    shifted right). transformers counts ``num_items_in_batch`` over the whole accumulated batch
    (and every process), so each target token weighs the same whatever the micro-batching; the
    models' own loss is a mean per micro-batch.
    """
    import torch.nn.functional as F

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    labels = labels.to(logits.device)
    keep = labels != IGNORE_INDEX
    loss = F.cross_entropy(logits[keep].float(), labels[keep], reduction="sum")  # only trained rows in fp32
    count = num_items_in_batch if num_items_in_batch is not None else keep.sum()
    return loss / count


def example_sum_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Classification cross-entropy summed over examples, divided by the examples in the accumulated batch."""
    import torch.nn.functional as F

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    if labels.dtype.is_floating_point:
        raise ConfigError("train.trainer=classification: labels must be class ids (integers); got float labels")
    loss = F.cross_entropy(logits.float(), labels.to(logits.device), reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else labels.numel()
    return loss / count


def accuracy_metrics(eval_pred: Any) -> dict[str, float]:
    """``eval_accuracy`` for ``train.best_metric=accuracy``: share of argmax predictions equal to the label."""
    import numpy as np

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((np.asarray(logits).argmax(-1) == np.asarray(labels)).mean())}


class DecoderInputs:
    """Adds ``decoder_input_ids`` (the labels shifted right) to each batch.

    The Trainer hands the labels to ``token_sum_loss`` instead of the model, so the model cannot
    derive its decoder inputs from them itself: ``labels [[5, 6, -100]]`` -> ``[[start, 5, 6]]``.
    """

    def __init__(self, collator: Any, start_id: int, pad_id: int) -> None:
        self.collator, self.start_id, self.pad_id = collator, start_id, pad_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(rows)
        labels = batch.get("labels")
        if labels is not None and "decoder_input_ids" not in batch:
            shifted = labels.new_full(labels.shape, self.pad_id)
            shifted[:, 1:] = labels[:, :-1]
            shifted[:, 0] = self.start_id
            batch["decoder_input_ids"] = shifted.masked_fill(shifted == IGNORE_INDEX, self.pad_id)
        return batch


@register_trainer("seq2seq", tasks=(Task.SEQ2SEQ,), default_for=Task.SEQ2SEQ)
def build_seq2seq_trainer(model: Any, args: Any, train_dataset: Any, eval_dataset: Any, data_collator: Any,
                          callbacks: list[Any], processing_class: Any = None) -> Any:
    """Encoder-decoder training on (input_ids, labels); loss per target token of the accumulated batch."""
    from tunesmith.training.guarded_trainer import TunesmithTrainer

    config = model.config
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        raise ConfigError("train.trainer=seq2seq: the model's config has no decoder_start_token_id; "
                          "is it an encoder-decoder model?")
    pad = config.pad_token_id if config.pad_token_id is not None else start
    return _without_default_printers(TunesmithTrainer(
        model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
        data_collator=DecoderInputs(data_collator, start, pad), callbacks=callbacks,
        processing_class=processing_class, compute_loss_func=token_sum_loss))


@register_trainer("classification", tasks=(Task.SEQUENCE_CLASSIFICATION,),
                  default_for=Task.SEQUENCE_CLASSIFICATION)
def build_classification_trainer(model: Any, args: Any, train_dataset: Any, eval_dataset: Any, data_collator: Any,
                                 callbacks: list[Any], processing_class: Any = None) -> Any:
    """Sequence classification; loss per example of the accumulated batch; evaluation adds ``eval_accuracy``."""
    from tunesmith.training.guarded_trainer import TunesmithTrainer

    return _without_default_printers(TunesmithTrainer(
        model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, data_collator=data_collator,
        callbacks=callbacks, processing_class=processing_class, compute_loss_func=example_sum_loss,
        compute_metrics=accuracy_metrics))


# Importing the modules registers grad_ascent, grad_diff and npo; dpo, orpo, kto and reward; grpo.
from tunesmith.training import grpo, preference, unlearning  # noqa: E402,F401
