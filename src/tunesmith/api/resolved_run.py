"""What a training run will do, decided once: ``ResolvedRun``.

``resolve_run(cfg)`` reads the model's config (``config.json``; no weights are loaded) and turns
every ``auto`` the run depends on into a concrete value: the device and precision, the model's
task, the trainer and its traits, the packing of the rows and the collator. The run reads these values from the
frozen object instead of deciding again; ``run.json`` records them under ``"plan"``, and
``tunesmith train --dry-run`` prints them without training.

Example:
    >>> resolve_run(load_config(overrides=["model=smollm2-135m", "data=arith"]), device="cpu").describe()
    ['task: causal_lm', 'trainer: sft', 'device: cpu', 'precision: fp32', 'packing: padding_free (auto)', ...]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional

from tunesmith.config import TrainConfig


class _Vocabulary(str, Enum):
    """A closed set of names; members are strings, printed as their value."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


class Task(_Vocabulary):
    """The kind of model a run trains (``model.task``)."""

    CAUSAL_LM = "causal_lm"
    SEQ2SEQ = "seq2seq"
    SEQUENCE_CLASSIFICATION = "sequence_classification"


class Precision(_Vocabulary):
    """The numeric precision of the training steps (``train.precision``)."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class Packing(_Vocabulary):
    """How examples become rows of a batch (``data.packing``)."""

    NONE = "none"
    PADDING_FREE = "padding_free"
    PACK = "pack"
    GROUP_BY_LENGTH = "group_by_length"

    @property
    def several_examples_per_row(self) -> bool:
        """Whether a row holds several examples (kept apart by position ids)."""
        return self in (Packing.PADDING_FREE, Packing.PACK)


@dataclass(frozen=True)
class ResolvedRun:
    """Every decision of a run that the config may leave to ``auto``, made once (see the module docstring).

    Attributes:
        task: the model's task.
        trainer: the registered trainer name (``auto`` resolved for the task).
        takes_retain, needs_retain, one_example_per_row: the trainer's registered traits.
        device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
        precision: of the training steps.
        packing: how examples become rows.
        collator: the registered collator that builds the batches (or a ``module:attr`` path).
        model_type: the transformers ``model_type`` of the base model.
        rows: what the trainer's rows hold (examples, preference, unpaired_preference, prompt).
        reference: the reference model of a preference trainer (adapter_off, copy, precomputed), else None.
        streaming: the training rows are read, tokenized and packed while training (``data.streaming``).
        memory_probe: whether the longest batch runs forward and backward before the first step
            (``train.memory_probe``).
    """

    task: Task
    trainer: str
    device: str
    precision: Precision
    packing: Packing
    collator: str
    model_type: Optional[str] = None
    takes_retain: bool = False
    needs_retain: bool = False
    one_example_per_row: bool = False
    rows: str = "examples"
    reference: Optional[str] = None
    streaming: bool = False
    memory_probe: bool = False

    def record(self) -> dict[str, Any]:
        """Plain JSON values, for ``run.json``."""
        return {k: (v.value if isinstance(v, Enum) else v) for k, v in dataclasses.asdict(self).items()}

    def describe(self, cfg: Optional[TrainConfig] = None) -> list[str]:
        """One ``name: value`` line per decision; ``(auto)`` marks values the config left to tunesmith."""
        settings = ({"task": cfg.model.task, "trainer": cfg.train.trainer, "device": cfg.model.device,
                     "precision": cfg.train.precision, "packing": cfg.data.packing,
                     "collator": cfg.data.collator, "memory_probe": cfg.train.memory_probe} if cfg else {})
        lines = []
        for key, value in self.record().items():
            auto = " (auto)" if settings.get(key) == "auto" else ""
            lines.append(f"{key}: {value}{auto}")
        return lines


def resolve_run(cfg: TrainConfig, device: Optional[str] = None, model_config: Any = None) -> ResolvedRun:
    """Decide the run ``cfg`` describes (see ``ResolvedRun``); reads the model's config, never its weights.

    Args:
        cfg: a checked config.
        device: the device already chosen (a process's own GPU under torchrun); default: ``model.device``.
        model_config: the transformers config of ``model.name_or_path``, when already read.

    Raises:
        ConfigError: a trainer for another task, a packing the task or trainer cannot use, an
            unknown device or precision.
    """
    from tunesmith.data.collators import resolve_collator_name
    from tunesmith.data.packing import check_packing_for_kind, resolve_packing
    from tunesmith.models.loading import infer_task, load_model_config
    from tunesmith.models.precision import resolve_device, resolve_precision
    from tunesmith.training.memory_probe import resolve_memory_probe
    from tunesmith.training.preference import check_preference_settings, reference_needed
    from tunesmith.training.reference import resolve_reference
    from tunesmith.training.trainers import requested_task, resolve_trainer, trainer_traits

    m = cfg.model
    if model_config is None:
        model_config = load_model_config(m.name_or_path, m.trust_remote_code, m.revision)
    task = Task(infer_task(model_config, requested_task(cfg.train.trainer, m.task)))
    trainer = resolve_trainer(cfg.train.trainer, task.value)
    traits = trainer_traits(trainer)
    check_preference_settings(trainer, cfg.train.preference, cfg.train.grpo)
    reference = (resolve_reference(cfg.train.preference.reference, cfg.peft.method, bool(m.adapter))
                 if reference_needed(trainer, cfg.train.preference) else None)
    if trainer == "grpo" and cfg.train.grpo.kl_weight > 0:  # the KL penalty's reference: the starting model
        reference = "copy" if cfg.peft.method == "full" or m.adapter else "adapter_off"
    device = device or resolve_device(m.device)
    model_type = getattr(model_config, "model_type", None)
    if traits.rows != "examples":  # pairs, unpaired answers, prompts: no blocks or length buckets
        check_packing_for_kind(cfg.data.packing, traits.rows)
    packing = resolve_packing(cfg.data.packing, task.value, model_type, one_example_per_row=traits.one_example_per_row)
    if cfg.data.streaming:
        check_streaming_run(cfg, trainer, traits.rows)
    memory_probe = resolve_memory_probe(cfg.train.memory_probe, device, traits.rows, cfg.train.distributed.strategy,
                                        streaming=cfg.data.streaming)
    return ResolvedRun(task=task, trainer=trainer, device=device,
                       precision=Precision(resolve_precision(cfg.train.precision, device)), packing=Packing(packing),
                       collator=resolve_collator_name(cfg.data.collator, task.value, packing, model_type),
                       model_type=model_type, takes_retain=traits.takes_retain, needs_retain=traits.needs_retain,
                       one_example_per_row=traits.one_example_per_row, rows=traits.rows, reference=reference,
                       streaming=cfg.data.streaming, memory_probe=memory_probe)


def check_streaming_run(cfg: TrainConfig, trainer: str, rows: str) -> None:
    """What a streaming run (``data.streaming=true``) needs beyond the data keys: a length in steps and
    a trainer that trains on examples.

    Raises:
        ConfigError: naming the key and what to do instead.
    """
    from tunesmith.data.streaming import check_streaming_config
    from tunesmith.errors import ConfigError

    check_streaming_config(cfg.data)
    check_streaming_length(cfg)
    if rows != "examples":
        raise ConfigError(f"data.streaming: train.trainer={trainer} trains on {rows.replace('_', ' ')} rows, which a "
                          "stream does not make; set data.streaming=false")


def check_streaming_length(cfg: TrainConfig) -> None:
    """A streaming run's length is ``train.max_steps``: a ``ConfigError`` when it is not set."""
    from tunesmith.errors import ConfigError

    if cfg.data.streaming and cfg.train.max_steps <= 0:
        raise ConfigError(f"train.max_steps: {cfg.train.max_steps} with data.streaming=true; a stream has no length "
                          "to count epochs in, so set the run's length in optimizer steps (train.max_steps=2000) and "
                          "give no train.epochs (giving epochs clears the step limit)")
