"""What a training run will do, decided once: ``ResolvedRun``.

``resolve_run(cfg)`` reads the model's config (``config.json``; no weights are loaded) and its
tokenizer, and turns every ``auto`` the run depends on into a concrete value: the device and
precision, the model's task, the trainer and its traits, the packing of the rows and the collator,
the attention kernel, the chat template, the data format (when known before reading), the
held-out metric (when known before reading), the memory trim, the resume mode, the evaluation and
checkpoint intervals and the backend of a distributed run. The decisions themselves live in
``tunesmith.api.choices``; the layers below receive only the chosen values. The run reads them from
the frozen object instead of deciding again; what can only be known from the data (a detected
format, a metric picked from the held-out examples) is added once the data is read
(``ResolvedRun.after_reading``). ``run.json`` records the result under ``"plan"``, and
``tunesmith train --dry-run`` prints it without training.

Example: ``resolve_run(load_config(overrides=["model=smollm2-135m", "data=arith"]), device="cpu").describe()``
-> ``['task: causal_lm', 'trainer: sft', 'device: cpu', 'precision: fp32', 'packing: padding_free', ...]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional

from tunesmith.config import TrainConfig
from tunesmith.config.vocabulary import Packing, Precision, Task

__all__ = ["Packing", "Precision", "ResolvedRun", "Task", "resolve_run"]


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
        attention: the attention kernel (varlen, segments, sdpa, eager, flash_attention_2), and
            ``attention_reason``: why, in one line.
        template: the chat template: ``own`` (the tokenizer's own), ``tags``, a packaged name or a
            ``.jinja`` path.
        format: the data format of ``data.train``; ``detect`` until the rows are read.
        metric: the held-out metric; None until the held-out data is read (or when nothing is measured).
        memory_trim: whether ``malloc_trim`` runs after each optimizer step, and ``memory_trim_reason``: why.
        cast_frozen_weights: whether frozen linear weights are held in bf16 while training.
        lora_kernel: ``fused`` (each LoRA linear layer one autograd step while training) or ``peft``,
            and ``lora_kernel_reason``: why, in one line.
        compile_layers: whether the decoder layers train through ``torch.compile``, and
            ``compile_reason``: why, in one line.
        resume: ``newest`` (an unfinished run's newest sound checkpoint), ``none`` or a checkpoint path.
        eval_strategy, save_strategy: when the model is evaluated and saved (no, steps, epoch), given
            held-out data.
        distributed_backend: the process group's backend (nccl, gloo) of a multi-process run.
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
    attention: Optional[str] = None
    attention_reason: Optional[str] = None
    template: Optional[str] = None
    format: Optional[str] = None
    metric: Optional[str] = None
    memory_trim: bool = False
    memory_trim_reason: str = ""
    cast_frozen_weights: bool = False
    lora_kernel: str = "peft"
    lora_kernel_reason: str = ""
    compile_layers: bool = False
    compile_reason: str = ""
    resume: str = "newest"
    eval_strategy: str = "no"
    save_strategy: str = "no"
    distributed_backend: str = "gloo"

    streaming: bool = False
    memory_probe: bool = False

    @property
    def scores_answers(self) -> bool:
        """Whether the run trains a reward model (a one-output classifier on preference pairs)."""
        return self.task == Task.SEQUENCE_CLASSIFICATION and self.rows == "preference"

    def record(self) -> dict[str, Any]:
        """Plain JSON values, for ``run.json``."""
        return {k: (v.value if isinstance(v, Enum) else v) for k, v in dataclasses.asdict(self).items()}

    def after_reading(self, **decided: Any) -> "ResolvedRun":
        """This plan with the decisions only the data could settle (``format``, ``metric``)."""
        unknown = set(decided) - {"format", "metric", "attention", "attention_reason"}
        if unknown:
            raise TypeError(f"after_reading: {', '.join(sorted(unknown))} is decided before reading")
        return dataclasses.replace(self, **decided)

    def describe(self, cfg: Optional[TrainConfig] = None) -> list[str]:
        """One ``name: value`` line per decision; ``(auto)`` marks values the config left to tunesmith."""
        from tunesmith.config.vocabulary import is_auto

        settings = ({"task": cfg.model.task, "trainer": cfg.train.trainer, "device": cfg.model.device,
                     "precision": cfg.train.precision, "packing": cfg.data.packing,
                     "collator": cfg.data.collator, "reference": cfg.train.preference.reference,
                     "attention": cfg.train.attention, "template": cfg.data.template, "format": cfg.data.format,
                     "metric": cfg.eval.metric, "memory_trim": cfg.train.memory_trim,
                     "cast_frozen_weights": cfg.train.frozen_weights,
                     "lora_kernel": cfg.train.lora_kernel, "compile_layers": cfg.train.compile,
                     "resume": cfg.train.resume,
                     "eval_strategy": cfg.train.eval_strategy, "save_strategy": cfg.train.save_strategy,
                     "distributed_backend": cfg.train.distributed.backend,
                     "memory_probe": cfg.train.memory_probe} if cfg else {})
        lines = []
        for key, value in self.record().items():
            if value is None and key in ("format", "metric"):
                value = "decided when the data is read"
            auto = " (auto)" if value is not None and is_auto(settings.get(key)) else ""
            lines.append(f"{key}: {value}{auto}")
        return lines


def resolve_run(cfg: TrainConfig, device: Optional[str] = None, model_config: Any = None,
                tokenizer: Any = None) -> ResolvedRun:
    """Decide the run ``cfg`` describes (see ``ResolvedRun``); reads the model's config, never its weights.

    Args:
        cfg: a checked config.
        device: the device already chosen (a process's own GPU under torchrun); default: ``model.device``.
        model_config: the transformers config of ``model.name_or_path``, when already read.
        tokenizer: the model's tokenizer, when already loaded (its chat template decides ``data.template=auto``).

    Raises:
        ConfigError: a trainer for another task, a packing the task or trainer cannot use, an
            unknown device or precision, an attention kernel that cannot run here.
    """
    from tunesmith.api.choices.batching import resolve_collator_name, resolve_packing
    from tunesmith.api.choices.data import choose_format, choose_template, known_metric
    from tunesmith.api.choices.runtime import distributed_backend, resolve_device, resolve_precision
    from tunesmith.api.choices.task import (check_trainer_settings, infer_task, requested_task, resolve_trainer,
                                            run_reference)
    from tunesmith.api.choices.training import (cast_frozen_weights, compile_layers, fuse_lora_layers, plan_memory_trim,
                                                planned_attention, resolve_memory_probe, resume_mode, strategies)
    from tunesmith.config.vocabulary import is_auto
    from tunesmith.data.packing import check_packing_for_kind
    from tunesmith.data.pipeline import has_held_out
    from tunesmith.models.loading import load_model_config, load_tokenizer
    from tunesmith.training.trainers import trainer_traits

    m = cfg.model
    if model_config is None:
        model_config = load_model_config(m.name_or_path, m.trust_remote_code, m.revision)
    task = Task(infer_task(model_config, requested_task(cfg.train.trainer, m.task)))
    trainer = resolve_trainer(cfg.train.trainer, task.value)
    traits = trainer_traits(trainer)
    check_trainer_settings(trainer, cfg.train.preference, cfg.train.grpo)
    reference = run_reference(trainer, cfg)
    device = device or resolve_device(m.device)
    precision = Precision(resolve_precision(cfg.train.precision, device))
    model_type = getattr(model_config, "model_type", None)
    if traits.rows != "examples" and not is_auto(cfg.data.packing):  # pairs, answers, prompts: no blocks
        check_packing_for_kind(cfg.data.packing, traits.rows)
    packing = Packing(resolve_packing(cfg.data.packing, task.value, model_type,
                                      one_example_per_row=traits.one_example_per_row))
    attention = planned_attention(cfg.train.attention, device, precision.value, packing.several_examples_per_row,
                                  model_config, cfg.data.max_length)
    if tokenizer is None:
        tokenizer = load_tokenizer(m.name_or_path, m.trust_remote_code, m.revision)
    intervals = strategies(cfg.train, has_held_out(cfg.data))
    trim = plan_memory_trim(cfg.train.memory_trim, device)
    if cfg.data.streaming:
        check_streaming_run(cfg, trainer, traits.rows)
    fused, fused_reason = fuse_lora_layers(cfg.train, cfg.peft.method, device)
    compiled, compile_reason = compile_layers(cfg.train, device)
    memory_probe = resolve_memory_probe(cfg.train.memory_probe, device, traits.rows, cfg.train.distributed.strategy,
                                        streaming=cfg.data.streaming)
    return ResolvedRun(
        task=task, trainer=trainer, device=device, precision=precision, packing=packing,
        collator=resolve_collator_name(cfg.data.collator, task.value, packing.value, model_type),
        model_type=model_type, takes_retain=traits.takes_retain, needs_retain=traits.needs_retain,
        one_example_per_row=traits.one_example_per_row, rows=traits.rows, reference=reference,
        attention=attention.kernel, attention_reason=attention.reason,
        template=choose_template(cfg.data.template, task.value, tokenizer), format=choose_format(cfg.data),
        metric=known_metric(cfg, task.value), memory_trim=trim.enabled, memory_trim_reason=trim.reason,
        cast_frozen_weights=cast_frozen_weights(cfg.train, precision.value, cfg.peft.method, device),
        lora_kernel="fused" if fused else "peft", lora_kernel_reason=fused_reason,
        compile_layers=compiled, compile_reason=compile_reason,
        resume=resume_mode(cfg.train.resume), eval_strategy=intervals["eval_strategy"],
        save_strategy=intervals["save_strategy"],
        distributed_backend=distributed_backend(cfg.train.distributed.backend, device),
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
