"""Turn a plain nested dict into a checked ``TrainConfig``.

Every problem names the dotted key, the bad value and what is allowed, for example::

    train.lerning_rate: unknown key. Did you mean 'train.lr'? Keys under train: batch_size, ...
    train.scheduler: 'cosin' is not allowed. Did you mean 'cosine'? Allowed: linear, cosine, ...
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Optional, Union

from tunesmith.config.aliases import key_in_section
from tunesmith.config.schema import TrainConfig, TrainSection
from tunesmith.errors import ConfigError
from tunesmith.registry import did_you_mean

_NONE_STRINGS = {"none", "null", "~"}


def build_config(data: dict[str, Any], cls: type = TrainConfig, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, converting and checking every value."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(fields)
            hint = did_you_mean(key, list(fields))
            synonym = key_in_section(key)  # learning_rate -> lr (config/aliases.py)
            if synonym in fields:
                hint = f" Did you mean '{synonym}'?"
            if not hint and not prefix:
                hint = _hint_in_sections(synonym or key, hints)
            if hint:
                hint = hint.replace("'", f"'{prefix}", 1)
            where = f"under {prefix[:-1]}" if prefix else "at the top level"
            raise ConfigError(f"{path}: unknown key.{hint} Keys {where}: {known}")
        kwargs[key] = convert(value, hints[key], path)
    return cls(**kwargs)


def _hint_in_sections(key: str, hints: dict[str, Any]) -> str:
    """For a top-level key that belongs in a section (``lr`` -> ``train.lr``)."""
    for section, tp in hints.items():
        if dataclasses.is_dataclass(tp) and key in {f.name for f in dataclasses.fields(tp)}:
            return f" Did you mean '{section}.{key}'?"
    return ""


def convert(value: Any, tp: Any, path: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise a ConfigError naming ``path``."""
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return build_config(value, tp, prefix=f"{path}.")
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in _NONE_STRINGS):
            if type(None) in args:
                return None
        if len(non_none) == 1:
            return convert(value, non_none[0], path)
        raise ConfigError(f"{path}: unsupported union type {tp}")  # schema bug, not user input
    if origin is Literal:
        allowed = [str(a) for a in args]
        if isinstance(value, bool) and {"on", "off"} <= set(allowed):
            value = "on" if value else "off"  # YAML reads a bare on / off (and true / false) as a boolean
        if str(value) not in allowed:
            raise ConfigError(
                f"{path}: {value!r} is not allowed.{did_you_mean(str(value), allowed)} "
                f"Allowed: {', '.join(allowed)}"
            )
        return str(value)
    if origin is dict:
        key_type, value_type = args
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping (key: value), got {value!r}")
        return {convert(k, key_type, path): convert(v, value_type, f"{path}.{k}") for k, v in value.items()}
    if origin is list:
        (item_type,) = args
        if isinstance(value, (str, int, float)) and not dataclasses.is_dataclass(item_type):
            value = [value]  # a single name is a one-item list: target_modules=all-linear
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [convert(v, item_type, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        return _bounded(_to_int(value, path), path)
    if tp is float:
        return _finite(_to_float(value, path), path)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return str(value)
    if tp is Any:
        return value
    raise ConfigError(f"{path}: unsupported type {tp}")


MAX_INT = 2**63 - 1  # every integer setting ends up in an int64 somewhere (torch, numpy, counters)
MAX_SEED = 2**32 - 1  # numpy's seed range, which transformers.set_seed passes the seed to
MAX_COUNT = 65536  # threads, LoRA rank: far above any real use, below what allocates or overflows
MAX_SECONDS = 2**31 - 1  # about 68 years; torch.distributed's timedelta overflows far above


def _to_int(value: Any, path: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ConfigError(f"{path}: expected an integer, got {value!r}")


def _bounded(value: int, path: str) -> int:
    if not -MAX_INT - 1 <= value <= MAX_INT:
        raise ConfigError(f"{path}: {value!r} is too large; expected an integer between -2**63 and 2**63-1")
    return value


def _to_float(value: Any, path: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    try:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value)
    except (ValueError, OverflowError):
        pass
    raise ConfigError(f"{path}: expected a number, got {value!r}")


def _finite(value: float, path: str) -> float:
    """NaN and +-inf are refused for every number: no setting means anything with them (``train.lr=inf``
    would train with a NaN learning rate)."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{path}: {value!r} is not allowed; expected a finite number")
    return value


def check_values(cfg: TrainConfig) -> TrainConfig:
    """Range checks that types alone do not express."""
    rules = [
        ("data.max_length", cfg.data.max_length > 0, "a positive number of tokens"),
        ("data.eval_split", 0.0 <= cfg.data.eval_split < 1.0, "a fraction in [0, 1)"),
        ("data.min_length", 0 <= cfg.data.min_length < cfg.data.max_length, "0 or a count below data.max_length"),
        ("data.max_bad_fraction", 0.0 <= cfg.data.max_bad_fraction <= 1.0, "a fraction in [0, 1]"),
        ("data.max_samples", cfg.data.max_samples is None or cfg.data.max_samples > 0,
         "a positive count or null"),
        ("data.num_proc", 1 <= cfg.data.num_proc <= MAX_COUNT, f"a number of processes from 1 to {MAX_COUNT}"),
        ("data.shuffle_buffer", 0 <= cfg.data.shuffle_buffer <= 10**7,
         "0 (the file's order) or a number of examples, at most 10000000"),
        ("data.shuffle_buffer", cfg.data.streaming or cfg.data.shuffle_buffer == 0,
         "0 unless data.streaming=true (without streaming every epoch is shuffled in full)"),
        ("peft.r", 0 < cfg.peft.r <= MAX_COUNT, f"a positive rank, at most {MAX_COUNT}"),
        ("peft.alpha", cfg.peft.alpha > 0, "a positive number"),
        ("peft.dropout", 0.0 <= cfg.peft.dropout < 1.0, "a probability in [0, 1)"),
        ("peft.last_layers", cfg.peft.last_layers > 0, "a positive number of layers"),
        ("train.epochs", cfg.train.epochs > 0, "a positive number of epochs"),
        ("train.max_steps", cfg.train.max_steps == -1 or cfg.train.max_steps > 0,
         "-1 (use epochs) or a positive number of steps"),
        ("train.batch_size", cfg.train.batch_size > 0, "a positive number of sequences"),
        ("train.grad_accum", cfg.train.grad_accum > 0, "a positive number of micro-batches"),
        ("train.lr", cfg.train.lr > 0, "a positive learning rate"),
        ("train.seed", 0 <= cfg.train.seed <= MAX_SEED, f"an integer from 0 to 2**32-1 ({MAX_SEED})"),
        ("train.warmup_ratio", 0.0 <= cfg.train.warmup_ratio < 1.0, "a fraction in [0, 1)"),
        ("train.weight_decay", cfg.train.weight_decay >= 0, "a non-negative number"),
        ("train.logging_steps", cfg.train.logging_steps > 0, "a positive number of steps"),
        ("train.save_steps", cfg.train.save_steps >= 0, "0 (end only) or a number of steps"),
        ("train.eval_steps", cfg.train.eval_steps >= 0, "0 (off) or a number of steps"),
        ("train.num_threads", 0 <= cfg.train.num_threads <= MAX_COUNT,
         f"0 (automatic) or a thread count, at most {MAX_COUNT}"),
        ("train.logits_chunk", cfg.train.logits_chunk > 0, "a positive number of rows"),
        ("train.cpu_kernel_cache", 0 <= cfg.train.cpu_kernel_cache <= MAX_COUNT,
         f"0 (no cache) or a number of kernels, at most {MAX_COUNT}"),
        ("train.resume", bool(cfg.train.resume.strip()), "auto, none or the path of a checkpoint or run directory"),
        ("eval.max_samples", cfg.eval.max_samples > 0, "a positive count"),
        ("eval.max_new_tokens", cfg.eval.max_new_tokens > 0, "a positive number of tokens"),
        ("eval.batch_size", cfg.eval.batch_size > 0, "a positive number of prompts"),
        ("eval.show_samples", cfg.eval.show_samples >= 0, "a non-negative count"),
        ("eval.temperature", cfg.eval.temperature > 0, "a positive temperature"),
        ("eval.top_p", 0.0 < cfg.eval.top_p <= 1.0, "a probability in (0, 1]"),
    ]
    for key, ok, allowed in rules:
        if not ok:
            section, name = key.split(".")
            value = getattr(getattr(cfg, section), name)
            raise ConfigError(f"{key}: {value!r} is not allowed; expected {allowed}")
    _check_train_values(cfg.train)
    for i, source in enumerate(cfg.data.mix):
        if source.weight <= 0:
            raise ConfigError(f"data.mix[{i}].weight: {source.weight!r} is not allowed; expected a positive weight")
    if not cfg.peft.target_modules:
        raise ConfigError("peft.target_modules: empty list; give module names or 'all-linear'")
    from tunesmith.config.shapes import trainer_name

    cfg.train.trainer = trainer_name(cfg.train.trainer)  # GradAscent -> grad_ascent, finetune -> auto
    device = cfg.model.device
    if device == "gpu" or device.startswith("gpu:"):  # the word many tools use for a CUDA device
        device = cfg.model.device = "cuda" + device[3:]
    if not (device in ("auto", "cpu", "cuda", "mps") or device.startswith("cuda:")):
        raise ConfigError(
            f"model.device: {device!r} is not allowed.{did_you_mean(device, ['auto', 'cpu', 'cuda', 'mps'])}"
            " Allowed: auto, cpu, cuda (or gpu), cuda:N, mps"
        )
    if cfg.train.attention in ("varlen", "flash_attention_2") and device in ("cpu", "mps"):
        raise ConfigError(f"train.attention: {cfg.train.attention!r} runs on CUDA GPUs only, and model.device is "
                          f"{device!r}; use auto, segments, sdpa or eager")
    return cfg


def _check_train_values(t: Any) -> None:
    """Range checks of ``train.*`` keys added for the training engine, and their combinations."""
    rules = [
        ("train.max_grad_norm", t.max_grad_norm, t.max_grad_norm >= 0, "0 (no clipping) or a positive norm"),
        ("train.warmup_steps", t.warmup_steps, t.warmup_steps >= 0, "0 (use train.warmup_ratio) or a number of steps"),
        ("train.save_limit", t.save_limit, t.save_limit >= 0, "0 (keep all) or a number of checkpoints"),
        ("train.early_stopping_patience", t.early_stopping_patience, t.early_stopping_patience >= 0,
         "0 (off) or a number of evaluations"),
        ("train.early_stopping_threshold", t.early_stopping_threshold, t.early_stopping_threshold >= 0,
         "a non-negative change of train.best_metric"),
        ("train.eval_steps", t.eval_steps, t.eval_strategy != "steps" or t.eval_steps > 0,
         "a positive number of steps with train.eval_strategy=steps"),
        ("train.save_steps", t.save_steps, t.save_strategy != "steps" or t.save_steps > 0,
         "a positive number of steps with train.save_strategy=steps"),
        ("train.distributed.zero_stage", t.distributed.zero_stage, t.distributed.zero_stage in (1, 2, 3),
         "1, 2 or 3"),
        ("train.distributed.timeout_s", t.distributed.timeout_s, 0 < t.distributed.timeout_s <= MAX_SECONDS,
         f"a positive number of seconds, at most {MAX_SECONDS}"),
        ("train.unlearning.beta", t.unlearning.beta, t.unlearning.beta > 0, "a positive inverse temperature"),
        ("train.unlearning.forget_weight", t.unlearning.forget_weight, t.unlearning.forget_weight > 0,
         "a positive weight"),
        ("train.unlearning.retain_weight", t.unlearning.retain_weight, t.unlearning.retain_weight >= 0,
         "a non-negative weight"),
        ("train.preference.beta", t.preference.beta, t.preference.beta > 0, "a positive inverse temperature"),
        ("train.preference.simpo_gamma", t.preference.simpo_gamma, t.preference.simpo_gamma >= 0,
         "a non-negative margin"),
        ("train.preference.sft_weight", t.preference.sft_weight, t.preference.sft_weight >= 0, "a non-negative weight"),
        ("train.preference.orpo_weight", t.preference.orpo_weight, t.preference.orpo_weight > 0, "a positive weight"),
        ("train.preference.desirable_weight", t.preference.desirable_weight, t.preference.desirable_weight > 0,
         "a positive weight"),
        ("train.preference.undesirable_weight", t.preference.undesirable_weight,
         t.preference.undesirable_weight > 0, "a positive weight"),
        ("train.grpo.group_size", t.grpo.group_size, t.grpo.group_size >= 2,
         "at least 2 completions per prompt (advantages compare the completions of a group)"),
        ("train.grpo.kl_weight", t.grpo.kl_weight, t.grpo.kl_weight >= 0, "0 (no KL penalty) or a positive weight"),
        ("train.grpo.max_new_tokens", t.grpo.max_new_tokens, t.grpo.max_new_tokens >= 1, "a positive number of tokens"),
        ("train.grpo.temperature", t.grpo.temperature, t.grpo.temperature > 0, "a positive temperature"),
        ("train.grpo.top_p", t.grpo.top_p, 0 < t.grpo.top_p <= 1, "a probability mass in (0, 1]"),
        ("train.grpo.top_k", t.grpo.top_k, t.grpo.top_k >= 0, "0 (no top-k filter) or a number of tokens"),
        ("train.grpo.rewards", t.grpo.rewards, len(t.grpo.rewards) > 0, "at least one reward function"),
        ("train.grpo.reward_weights", t.grpo.reward_weights,
         not t.grpo.reward_weights or len(t.grpo.reward_weights) == len(t.grpo.rewards),
         f"one weight per reward in train.grpo.rewards ({len(t.grpo.rewards)}), or empty (all 1.0)"),
    ]
    for key, value, ok, allowed in rules:
        if not ok:
            raise ConfigError(f"{key}: {value!r} is not allowed; expected {allowed}")
    check_best_model_evaluation(t)
    if t.logging_dir and "tensorboard" not in t.log_to:
        t.log_to = [*t.log_to, "tensorboard"]  # a TensorBoard folder was given: the user wants its logs
    for i, name in enumerate(t.log_to):
        if name in t.log_to[:i]:
            raise ConfigError(f"train.log_to[{i}]: {name!r} is listed twice")
    stray = sorted(set(t.grpo.reward_args) - set(t.grpo.rewards))
    if stray:
        raise ConfigError(f"train.grpo.reward_args.{stray[0]}: no reward named {stray[0]!r} in train.grpo.rewards "
                          f"({', '.join(t.grpo.rewards)})")
    unknown = sorted(set(t.callback_args) - set(t.callbacks))
    if unknown:
        raise ConfigError(f"train.callback_args.{unknown[0]}: no callback named {unknown[0]!r} in train.callbacks "
                          f"({', '.join(t.callbacks) or 'empty'})")


def interval(strategy: str, steps: int) -> str:
    """``train.eval_strategy`` / ``save_strategy`` as transformers reads it: ``auto`` means every N
    steps when N > 0, else never (``interval("auto", 0)`` -> ``"no"``)."""
    if strategy == "auto":
        return "steps" if steps > 0 else "no"
    return strategy


def check_best_model_evaluation(t: TrainSection, has_eval: Optional[bool] = None) -> None:
    """The rule of ``train.keep_best`` and ``train.early_stopping_patience``, in one place: both need
    the model evaluated during training, so an evaluation interval and held-out data.

    Args:
        t: the train section.
        has_eval: whether the run has held-out data; None while only the config is known.
    """
    if not (t.keep_best or t.early_stopping_patience):
        return
    key = "train.keep_best" if t.keep_best else "train.early_stopping_patience"
    if interval(t.eval_strategy, t.eval_steps) == "no":
        raise ConfigError(f"{key}: needs evaluation during training; set train.eval_steps=N (or "
                          "train.eval_strategy=epoch) and give held-out data (data.eval or data.eval_split)")
    if has_eval is False:
        raise ConfigError(f"{key}: needs an eval set during training; set data.eval or data.eval_split "
                          "(built-in datasets bring their own test split)")
