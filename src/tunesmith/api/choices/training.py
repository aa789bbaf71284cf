"""Settings of the training loop left to ``auto``: the attention kernel (``train.attention``),
frozen weights held in bf16 (``train.frozen_weights``), fused LoRA layers (``train.lora_kernel``),
``malloc_trim`` after each step
(``train.memory_trim``), which checkpoint to resume (``train.resume``) and when to evaluate and
save (``train.eval_strategy`` / ``train.save_strategy``).

Attention, by device, precision and whether batches are padding-free (several examples in one
row, kept apart by ``position_ids``):

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

import copy
import types
from typing import Any, Iterator, Optional

from tunesmith.config.vocabulary import Precision, is_auto
from tunesmith.errors import ConfigError


def choose_attention(setting: str, device: str, precision: str, padding_free: bool, model: Any,
                     max_length: int) -> Any:
    """Resolve ``train.attention`` for this device, precision, batch layout and model (or a stand-in
    holding only its ``config``, see ``planned_attention``).

    Example:
        ``choose_attention("auto", "cpu", "bf16", True, llama, 512)`` ->
        ``AttentionChoice("segments", "auto on cpu with padding-free rows: one SDPA call per example")``.

    Raises:
        ConfigError: ``varlen`` or ``segments`` asked for where it cannot run.
    """
    from tunesmith.training.attention_choice import PER_EXAMPLE_KERNELS, AttentionChoice
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
    if not is_auto(setting):
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


def planned_attention(setting: str, device: str, precision: str, padding_free: bool, model_config: Any,
                      max_length: int) -> Any:
    """``choose_attention`` from the model's config alone, before the weights are loaded: the model
    is taken to attend as ``attention_kwargs`` will load it (transformers' SDPA unless
    ``train.attention`` names another implementation). The run checks the choice again once the
    model is loaded."""
    named = attention_kwargs(setting, device).get("attn_implementation")
    config = PlannedConfig(model_config, named or "sdpa")
    return choose_attention(setting, device, precision, padding_free, types.SimpleNamespace(config=config),
                            max_length)


class PlannedConfig:
    """A model's config as the loaded model will have it: every attribute of ``config``, with the
    attention implementation the load will ask for (the config object itself is left alone)."""

    def __init__(self, config: Any, attn_implementation: str) -> None:
        self._config = config
        self._attn_implementation = attn_implementation

    def __getattr__(self, name: str) -> Any:
        return getattr(self._config, name)


def attention_kwargs(attention: str, device: str) -> dict[str, Any]:
    """``from_pretrained`` keywords for ``train.attention``.

    ``attention_kwargs("auto", "cpu")`` -> ``{}``; ``attention_kwargs("eager", "cpu")`` ->
    ``{"attn_implementation": "eager"}``. ``flash_attention_2`` needs a CUDA device (and the
    flash-attn package, which transformers checks when loading); so does ``varlen``. ``varlen``
    and ``segments`` load the model with SDPA and switch to themselves while training.
    """
    from tunesmith.training.attention_choice import PER_EXAMPLE_KERNELS

    if attention in ("flash_attention_2", "varlen") and not str(device).startswith("cuda"):
        raise ConfigError(f"train.attention: {attention!r} runs on CUDA GPUs only, not on {device!r}; "
                          "use auto, segments, sdpa or eager")
    if is_auto(attention) or attention in PER_EXAMPLE_KERNELS:
        return {}
    return {"attn_implementation": attention}


def cast_frozen_weights(train: Any, precision: str, method: str, device: str = "cpu") -> bool:
    """``train.frozen_weights``: ``auto`` holds the frozen linear weights in bf16 on a CPU under bf16
    autocast with lora and no sharding (fsdp keeps one dtype per shard); ``as_loaded`` never."""
    from tunesmith.training.speed import CASTABLE_METHODS

    return (is_auto(train.frozen_weights) and precision == Precision.BF16 and str(device).startswith("cpu")
            and method in CASTABLE_METHODS and train.distributed.strategy == "ddp")


FUSED_LORA_DEVICES = ("cpu", "cuda")  # where train.lora_kernel=auto fuses (docs/benchmarks.md)


def fuse_lora_layers(train: Any, method: str, device: str) -> tuple[bool, str]:
    """``train.lora_kernel``: whether LoRA's linear layers run as one autograd step each while
    training (`tunesmith.training.fused_lora`), and why, in one line.

    ``auto`` fuses with ``peft.method=lora`` on a CPU or CUDA, unless fsdp or deepspeed shard the
    weights (their hooks gather a layer's weight only when its own forward runs); ``peft`` never
    does; ``fused`` does or raises.

    Example: ``fuse_lora_layers(TrainSection(), "lora", "cpu")`` ->
    ``(True, "one autograd step per LoRA linear layer; train.lora_kernel=auto on cpu")``.

    Raises:
        ConfigError: ``fused`` with another method or with sharded weights.
    """
    setting, strategy = train.lora_kernel, train.distributed.strategy
    if setting == "peft":
        return False, "train.lora_kernel=peft"
    why_not = None
    if method != "lora":
        why_not = f"peft.method={method}: fused layers are plain LoRA over unquantized linear layers"
    elif strategy != "ddp":
        why_not = f"train.distributed.strategy={strategy} shards the weights"
    elif is_auto(setting) and not str(device).startswith(FUSED_LORA_DEVICES):
        why_not = f"train.lora_kernel=auto is not measured on {device}"
    if why_not is None:
        return True, "one autograd step per LoRA linear layer; train.lora_kernel=" + (
            f"auto on {device}" if is_auto(setting) else "fused")
    if not is_auto(setting):
        raise ConfigError(f"train.lora_kernel: 'fused' does not apply with {why_not}; use auto or peft")
    return False, why_not


def lora_kernel_note(setting: str, planned: str, reason: str, switched: int) -> str:
    """The line a run logs once its LoRA layers are switched: ``planned`` and ``reason`` are the
    plan's ``lora_kernel`` and ``lora_kernel_reason``, ``switched`` how many layers were fused.

    Raises:
        ConfigError: ``train.lora_kernel=fused`` and none of the model's LoRA layers can take it.
    """
    if switched:
        return f"LoRA layers: fused, {switched} of them ({reason})"
    if planned != "fused":
        return f"LoRA layers: peft's ({reason})"
    why = "none of this model's LoRA layers is a peft LoRA layer over a torch.nn.Linear"
    if setting == "fused":
        raise ConfigError(f"train.lora_kernel: 'fused' does not apply: {why}; use auto or peft")
    return f"LoRA layers: peft's ({why})"


COMPILE_DEVICES: tuple[str, ...] = ()  # where train.compile=auto compiles (docs/benchmarks.md)
EAGER_BECAUSE = {  # why auto stays eager on a device, as measured (docs/benchmarks.md)
    "cpu": "measured on SmolLM2-135M: 1.13x the speed and 0.79x the memory after half a minute of "
           "compiling, earned back only after about 100 steps; train.compile=on for long runs",
    "cuda": "not yet measured on a GPU; bench/gpu/run.sh measures it",
}


def compile_layers(train: Any, device: str) -> tuple[bool, str]:
    """``train.compile``: whether the decoder layers train through ``torch.compile``
    (`tunesmith.training.compiled_layers`), and why, in one line.

    ``auto`` compiles on the devices where it was measured to pay (``COMPILE_DEVICES``); ``on``
    compiles or raises; ``off`` never does.

    Example: ``compile_layers(TrainSection(), "mps")`` ->
    ``(False, "train.compile=auto: eager on mps (not measured there)")``.

    Raises:
        ConfigError: ``on`` where this machine cannot compile for the device, with fsdp /
            deepspeed, or with gradient checkpointing.
    """
    from tunesmith.training.compiled_layers import compile_unavailable

    setting, strategy, kind = train.compile, train.distributed.strategy, str(device).split(":")[0]
    if setting == "off":
        return False, "train.compile=off"
    if is_auto(setting) and kind not in COMPILE_DEVICES:
        return False, f"train.compile=auto: eager on {kind} ({EAGER_BECAUSE.get(kind, 'not measured there')})"
    why_not = compile_unavailable(device)
    if why_not is None and strategy != "ddp":
        why_not = (f"train.distributed.strategy={strategy} shards the weights, and compiled layers are "
                   "supported with ddp only")
    if why_not is None and train.gradient_checkpointing:
        why_not = ("train.gradient_checkpointing=true: a checkpointed layer does not compile (it would run "
                   "eagerly)")
    if is_auto(setting):
        return (False, f"train.compile=auto: eager ({why_not})") if why_not else (True, f"train.compile=auto on {kind}")
    if why_not:
        raise ConfigError(f"train.compile: 'on' cannot run here: {why_not}; use auto or off")
    return True, "train.compile=on"


def compile_note(setting: str, planned: bool, reason: str, switched: int) -> str:
    """The line a run logs once its decoder layers are switched: ``planned`` and ``reason`` are the
    plan's ``compile_layers`` and ``compile_reason``, ``switched`` how many layers were compiled.

    Raises:
        ConfigError: ``train.compile=on`` and the model has no decoder layer to compile.
    """
    if switched:
        return (f"Compiled layers: {switched} decoder layers train through torch.compile ({reason}); "
                "the first step includes compiling them")
    if not planned:
        return f"Compiled layers: none, eager ({reason})"
    why = "the model has no repeated decoder layer (a transformers GradientCheckpointingLayer or a class in _no_split_modules)"
    if setting == "on":
        raise ConfigError(f"train.compile: 'on' does not apply: {why}; use auto or off")
    return f"Compiled layers: none, eager ({why})"


def frozen_linear_weights(model: Any, train: Any, precision: str, method: str, device: str = "cpu") -> Iterator[int]:
    """``tunesmith.training.speed.frozen_linear_weights`` as ``train.frozen_weights`` decides
    (``cast_frozen_weights``); yields how many weights were cast."""
    from tunesmith.training.speed import frozen_linear_weights as cast

    return cast(model, cast_frozen_weights(train, precision, method, device))


def plan_memory_trim(setting: str, device: str) -> Any:
    """Resolve ``train.memory_trim`` (auto | on | off) for a run on ``device``: a ``TrimPlan``.

    ``plan_memory_trim("auto", "cpu")`` on Linux -> enabled, ``"... train.memory_trim=auto on cpu"``;
    ``plan_memory_trim("auto", "cuda:0")`` -> disabled (the activations are not in malloc's heaps).
    """
    from tunesmith.training import host_memory
    from tunesmith.training.host_memory import TrimPlan

    if setting == "off":
        return TrimPlan(setting, False, "train.memory_trim=off")
    if is_auto(setting) and not str(device).startswith("cpu"):
        return TrimPlan(setting, False, f"train.memory_trim=auto trims on a CPU only; the model trains on {device}")
    trim, note = host_memory.glibc_malloc_trim()
    if trim is None:
        return TrimPlan(setting, False, f"train.memory_trim={setting} has no effect: {note}")
    return TrimPlan(setting, True, f"{note} malloc_trim after every optimizer step; train.memory_trim={setting}"
                    + (f" on {device}" if is_auto(setting) else ""))


def resume_mode(resume: str) -> str:
    """``train.resume`` as the run reads it: ``newest`` (``auto``: the newest sound checkpoint of an
    unfinished run in ``output_dir``), ``none`` (start from step 0) or a checkpoint path."""
    from tunesmith.training.resume import NEWEST

    value = resume.strip()
    return NEWEST if is_auto(value) else value


def strategies(train: Any, has_eval: bool) -> dict[str, Any]:
    """``train.eval_strategy`` / ``train.save_strategy`` as transformers reads them (``no``, ``steps``,
    ``epoch``; evaluation happens only ``has_eval``), with the steps they use. ``auto``: every N steps when N > 0, else never; with
    ``train.keep_best`` an ``auto`` save follows the evaluation (the best checkpoint can only be one
    saved right after an evaluation).

    Example: ``strategies(TrainSection(eval_steps=50, save_steps=0), True)`` ->
    ``{"eval_strategy": "steps", "eval_steps": 50, "save_strategy": "no", "save_steps": 0}``.
    """
    def interval(strategy: str, steps: int) -> str:
        return ("steps" if steps > 0 else "no") if is_auto(strategy) else strategy

    evaluate = interval(train.eval_strategy, train.eval_steps)
    save, save_steps = interval(train.save_strategy, train.save_steps), train.save_steps
    if train.keep_best and is_auto(train.save_strategy):
        save, save_steps = (evaluate if has_eval else "no"), train.eval_steps
    return {"eval_strategy": evaluate, "eval_steps": train.eval_steps, "save_strategy": save, "save_steps": save_steps}


def concrete_config(cfg: Any, device: str, has_eval: Optional[bool] = None) -> Any:
    """A copy of ``cfg`` whose ``train`` keys that the training layer reads hold chosen values
    (``distributed.backend``, ``resume``, and with ``has_eval`` the eval / save strategies)."""
    from tunesmith.api.choices.runtime import distributed_backend

    out = copy.deepcopy(cfg)
    t = out.train
    t.distributed.backend = distributed_backend(t.distributed.backend, device)
    t.resume = resume_mode(t.resume)
    if has_eval is not None:
        chosen = strategies(cfg.train, has_eval)
        t.eval_strategy, t.save_strategy, t.save_steps = (chosen["eval_strategy"], chosen["save_strategy"],
                                                          chosen["save_steps"])
    return out


def build_training_args(cfg: Any, run_dir: Any, device: str, precision: str, has_eval: bool,
                        loader: Any = None) -> Any:
    """``tunesmith.training.arguments.build_training_args`` for a config whose ``train`` keys may be
    ``auto`` (resolved with ``concrete_config``)."""
    from tunesmith.training.arguments import build_training_args as build

    return build(concrete_config(cfg, device, has_eval), run_dir, device, precision, has_eval, loader)


def training_args_kwargs(cfg: Any, run_dir: Any, device: str, precision: str, has_eval: bool,
                         loader: Any = None) -> dict[str, Any]:
    """``tunesmith.training.arguments.training_args_kwargs`` for a config whose ``train`` keys may be
    ``auto`` (resolved with ``concrete_config``)."""
    from tunesmith.training.arguments import training_args_kwargs as kwargs

    return kwargs(concrete_config(cfg, device, has_eval), run_dir, device, precision, has_eval, loader)


def plan_resume(cfg: Any) -> Any:
    """``tunesmith.training.resume.plan_resume`` for ``train.resume`` as written (``resume_mode``)."""
    from tunesmith.training import resume

    return resume.plan_resume(cfg, resume_mode(cfg.train.resume))


def resolve_memory_probe(setting: str, device: str, rows: str, strategy: str, streaming: bool = False) -> bool:
    """``train.memory_probe`` (auto | on | off) for this run: auto probes on a GPU (``cuda``, ``mps``),
    where memory is small and fixed, and not on a CPU, where it is the host's. Refused where the
    probe cannot work: a trainer of prompts (``grpo`` samples its answers first, so a step's length
    is known only after sampling), DeepSpeed (its engine keeps gradients in buffers of its own,
    which a probe's backward pass would fill) and a streamed corpus (``data.streaming``: its rows are
    read while training, so its longest batch is not known before)."""
    why_not = ("the trainer samples its answers inside the step, so the longest batch is not known before "
               "it runs" if rows == "prompt" else
               "DeepSpeed keeps gradients in buffers of its own that a probe would fill"
               if strategy == "deepspeed" else
               "the training rows are streamed (data.streaming=true), so the longest batch is not known before "
               "the stream is read" if streaming else None)
    if setting == "on" and why_not:
        raise ConfigError(f"train.memory_probe: on is not possible here: {why_not}; use auto or off")
    if is_auto(setting):
        return why_not is None and not device.startswith("cpu")
    return setting == "on"
