"""Component-style YAML (``model_args``, ``tokenizer_args``, ``template_args``, datasets with
``args.hf_args``, ``trainer: {name, args}``) -> tunesmith's config keys.

Configs written for Hydra-based unlearning and fine-tuning toolkits describe each component by the
arguments of the library call behind it. ``translate_shapes`` turns such a file into the dotted
keys of ``TrainConfig`` before anything else reads it, so both spellings go through the same
checks. A key with no tunesmith meaning is an error naming the key and what to write instead.

Example::

    model_args: {pretrained_model_name_or_path: ./my-model, torch_dtype: bfloat16}
    trainer: {name: finetune, args: {learning_rate: 1e-5, num_train_epochs: 3}}

becomes ``model.name_or_path=./my-model``, ``model.dtype=bfloat16``, ``train.trainer=auto``,
``train.lr=1e-5``, ``train.epochs=3``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tunesmith.config.schema import DataConfig
from tunesmith.errors import ConfigError
from tunesmith.registry import did_you_mean

# Trainer names used by unlearning toolkits -> tunesmith's registered trainers.
TRAINER_NAMES = {"finetune": "auto", "GradAscent": "grad_ascent", "GradDiff": "grad_diff", "NPO": "npo"}

_MODEL_ARGS = {"pretrained_model_name_or_path": "model.name_or_path", "torch_dtype": "model.dtype",
               "dtype": "model.dtype", "attn_implementation": "train.attention",
               "trust_remote_code": "model.trust_remote_code", "revision": "model.revision"}
_TEMPLATE_TAGS = {"user_start_tag": "user_start", "user_end_tag": "user_end", "asst_start_tag": "assistant_start",
                  "asst_tag": "assistant_start", "asst_end_tag": "assistant_end", "sys_start_tag": "system_start",
                  "sys_end_tag": "system_end"}
# transformers' optimizer names -> train.optimizer
_OPTIMIZERS = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_hf": "adamw", "adamw": "adamw",
               "adamw_bnb_8bit": "adamw_8bit", "adamw_8bit": "adamw_8bit", "paged_adamw_32bit": "paged_adamw",
               "paged_adamw_8bit": "paged_adamw_8bit", "sgd": "sgd"}
# TrainingArguments names that set a tunesmith key directly (the rest are handled in _trainer_arg).
_TRAINER_ARGS = {"learning_rate": "train.lr", "num_train_epochs": "train.epochs", "max_steps": "train.max_steps",
                 "per_device_train_batch_size": "train.batch_size", "per_device_eval_batch_size": "eval.batch_size",
                 "gradient_accumulation_steps": "train.grad_accum", "lr_scheduler_type": "train.scheduler",
                 "warmup_ratio": "train.warmup_ratio", "warmup_steps": "train.warmup_steps",
                 "weight_decay": "train.weight_decay", "seed": "train.seed", "logging_steps": "train.logging_steps",
                 "save_steps": "train.save_steps", "eval_steps": "train.eval_steps",
                 "save_strategy": "train.save_strategy", "eval_strategy": "train.eval_strategy",
                 "save_total_limit": "train.save_limit", "save_only_model": "train.save_only_model",
                 "bf16_full_eval": "train.bf16_full_eval", "logging_dir": "train.logging_dir",
                 "max_grad_norm": "train.max_grad_norm", "gradient_checkpointing": "train.gradient_checkpointing",
                 "output_dir": "output_dir"}
SHAPE_KEYS = ("model_args", "tokenizer_args", "template_args", "trainer")


def uses_shapes(user: dict[str, Any]) -> bool:
    """Whether a user's YAML dict is written in component shapes (any of ``SHAPE_KEYS``, or a
    dataset entry with ``args``)."""
    data = user.get("data")
    return any(k in user for k in SHAPE_KEYS) or (isinstance(data, dict) and bool(_dataset_entries(data)))


def translate_shapes(user: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a user's YAML dict into (what stays as it is, dotted keys from component shapes).

    ``where`` names the file in error messages.

    Example:
        >>> translate_shapes({"model_args": {"pretrained_model_name_or_path": "gpt2"}, "peft": "lora"}, "f.yaml")
        ({'peft': 'lora'}, {'model.name_or_path': 'gpt2'})
    """
    rest = {k: v for k, v in user.items() if k not in SHAPE_KEYS}
    keys: dict[str, Any] = {}
    model = _mapping(user.get("model_args"), "model_args", where)
    for name, value in model.items():
        keys[_known(name, _MODEL_ARGS, "model_args", where)] = _dtype(value) if "dtype" in name else value
    _check_tokenizer_args(_mapping(user.get("tokenizer_args"), "tokenizer_args", where), model, where)
    keys.update(template_keys(_mapping(user.get("template_args"), "template_args", where), where))
    if "trainer" in user:
        keys.update(_trainer_keys(user["trainer"], where))
    if isinstance(user.get("data"), dict):
        data = dict(user["data"])
        for role, name, entry in _dataset_entries(data):
            keys.update(_dataset_keys(role, name, entry, where))
            if role in data and role != name:
                del data[role]
            else:
                del data[name]
        if data:
            rest["data"] = data
        else:
            rest.pop("data")
    return rest, keys


def trainer_name(name: str) -> str:
    """``"GradAscent"`` -> ``"grad_ascent"``; names without an alias come back as they are."""
    return TRAINER_NAMES.get(name, name)


def _mapping(value: Any, key: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key} (in {where}): expected a mapping of arguments, got {value!r}")
    return value


def _known(name: str, table: dict[str, str], section: str, where: str) -> str:
    if name not in table:
        raise ConfigError(f"{section}.{name} (in {where}): no tunesmith equivalent.{did_you_mean(name, list(table))} "
                          f"{section} takes: {', '.join(table)}; set other settings with tunesmith keys")
    return table[name]


def _dtype(value: Any) -> str:
    return str(value).removeprefix("torch.")  # torch.bfloat16 -> bfloat16


def _check_tokenizer_args(args: dict[str, Any], model: dict[str, Any], where: str) -> None:
    """tunesmith loads the tokenizer saved with the model; tokenizer_args may only repeat the model's settings."""
    for name, value in args.items():
        if name not in ("pretrained_model_name_or_path", "trust_remote_code", "revision"):
            raise ConfigError(f"tokenizer_args.{name} (in {where}): no tunesmith equivalent; tunesmith loads the "
                              "tokenizer saved with model.name_or_path")
        if name in model and model[name] != value:
            raise ConfigError(f"tokenizer_args.{name}={value!r} (in {where}) differs from model_args.{name}="
                              f"{model[name]!r}; tunesmith uses the tokenizer saved with the model, so give "
                              "the model's value (or leave tokenizer_args out)")


def template_keys(args: dict[str, Any], where: str) -> dict[str, Any]:
    """``template_args`` -> data keys: ``apply_chat_template: true`` is the tokenizer's template
    (``data.template=auto``); ``false`` with tags is ``data.template=tags`` and ``data.tags.*``.

    Example:
        >>> template_keys({"apply_chat_template": False, "asst_tag": "A: "}, "f.yaml")
        {'data.template': 'tags', 'data.tags.assistant_start': 'A: '}
    """
    if not args:
        return {}
    tags = {k: v for k, v in args.items() if k != "apply_chat_template"}
    for name in tags:
        _known(name, _TEMPLATE_TAGS, "template_args", where)
    if args.get("apply_chat_template", False):
        if tags:
            raise ConfigError(f"template_args (in {where}): {', '.join(tags)} apply only with "
                              "apply_chat_template: false; remove them or turn the chat template off")
        return {"data.template": "auto"}
    out: dict[str, Any] = {"data.template": "tags"}
    for name, value in tags.items():
        out[f"data.tags.{_TEMPLATE_TAGS[name]}"] = value
    return out


def template_args_for(data: Any) -> dict[str, Any]:
    """A ``DataConfig``'s template settings in ``template_args`` spelling, for dataset handlers.

    Example:
        >>> template_args_for(DataConfig())
        {'apply_chat_template': True}
    """
    if data.template != "tags":
        return {"apply_chat_template": True}
    t = data.tags
    return {"apply_chat_template": False, "user_start_tag": t.user_start, "user_end_tag": t.user_end,
            "asst_start_tag": t.assistant_start, "asst_end_tag": t.assistant_end, "sys_start_tag": t.system_start,
            "sys_end_tag": t.system_end}


def _trainer_keys(trainer: Any, where: str) -> dict[str, Any]:
    """``trainer: {name: finetune, args: {...}}`` -> ``train.trainer`` and the mapped arguments."""
    if isinstance(trainer, str):
        return {"train.trainer": trainer_name(trainer)}
    spec = _mapping(trainer, "trainer", where)
    unknown = sorted(set(spec) - {"name", "args", "handler"})
    if unknown:
        raise ConfigError(f"trainer.{unknown[0]} (in {where}): not a trainer setting; a trainer is "
                          "{name: <trainer>, args: {<TrainingArguments>}}")
    out: dict[str, Any] = {}
    name = spec.get("name", spec.get("handler"))
    if name is not None:
        out["train.trainer"] = trainer_name(str(name))
    for arg, value in _mapping(spec.get("args"), "trainer.args", where).items():
        out.update(_trainer_arg(arg, value, where))
    return out


# TrainingArguments names whose tunesmith counterpart works differently: what to write instead.
_TRAINER_ARG_HINTS = {
    "deepspeed": "train.distributed.strategy=deepspeed (with train.distributed.deepspeed_config for a JSON file)",
    "fsdp": "train.distributed.strategy=fsdp", "resume_from_checkpoint": "train.resume",
    "load_best_model_at_end": "train.keep_best", "metric_for_best_model": "train.best_metric",
    "lora_r": "peft.r", "max_length": "data.max_length",
}


def _trainer_arg(name: str, value: Any, where: str) -> dict[str, Any]:
    """One ``TrainingArguments`` entry -> tunesmith keys (``{}`` for flags that describe what always happens)."""
    if name in _TRAINER_ARGS:
        return {_TRAINER_ARGS[name]: value}
    if name in ("bf16", "fp16"):
        return {"train.precision": name} if value else {}
    if name == "optim":
        if str(value) not in _OPTIMIZERS:
            raise ConfigError(f"trainer.args.optim={value!r} (in {where}): not supported; use one of "
                              f"{', '.join(_OPTIMIZERS)} (train.optimizer)")
        return {"train.optimizer": _OPTIMIZERS[str(value)]}
    if name == "report_to":
        targets = [value] if isinstance(value, str) else list(value or [])
        return {"train.log_to": [t for t in targets if t not in ("none", "all")]}
    if name in ("do_train", "do_eval"):
        # tunesmith always trains, and evaluates whenever there is held-out data.
        if name == "do_train" and not value:
            raise ConfigError(f"trainer.args.do_train=false (in {where}): tunesmith train always trains; "
                              "use tunesmith eval to evaluate only")
        return {}
    if name in _TRAINER_ARG_HINTS:
        raise ConfigError(f"trainer.args.{name} (in {where}): not a trainer argument in tunesmith; "
                          f"set {_TRAINER_ARG_HINTS[name]}")
    raise ConfigError(f"trainer.args.{name} (in {where}): no tunesmith equivalent."
                      f"{did_you_mean(name, [*_TRAINER_ARGS, 'bf16', 'fp16', 'optim', 'report_to'])} "
                      "Set the tunesmith key instead (see docs/coming-from-the-design-documents.md)")


def _dataset_entries(data: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(role, name, entry)`` for each dataset written as ``NAME: {args: {...}}``, directly under
    ``data`` (the training set) or under ``data.train`` / ``eval`` / ``forget`` / ``retain``."""
    out = []
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    for key, value in data.items():
        if key in fields and key not in ("train", "eval", "retain"):  # data.dataset_args etc. stay keys
            continue
        if _is_entry(value):
            out.append(("train", key, value))
        elif key in ("train", "eval", "forget", "retain") and isinstance(value, dict) and len(value) == 1:
            (name, entry), = value.items()
            if _is_entry(entry):
                out.append((key, name, entry))
    return out


def _is_entry(value: Any) -> bool:
    return isinstance(value, dict) and ("args" in value or "handler" in value)


def _dataset_keys(role: str, name: str, entry: dict[str, Any], where: str) -> dict[str, Any]:
    """One dataset entry -> data keys: the registered dataset (``handler`` when given, else the
    entry's own name) and its arguments (``args``, ``hf_args`` included) as ``data.dataset_args``."""
    target = {"train": "data.train", "forget": "data.train", "eval": "data.eval", "retain": "data.retain"}[role]
    unknown = sorted(set(entry) - {"args", "handler"})
    if unknown:
        raise ConfigError(f"data.{name}.{unknown[0]} (in {where}): a dataset entry takes handler and args")
    args = dict(_mapping(entry.get("args"), f"data.{name}.args", where))
    out: dict[str, Any] = {target: str(entry.get("handler") or name)}
    if args:
        if role not in ("train", "forget"):
            raise ConfigError(f"data.{role}.{name}.args (in {where}): only the training set takes handler "
                              "arguments (data.dataset_args); register the held-out set with its arguments built in")
        out["data.dataset_args"] = args
    return out
