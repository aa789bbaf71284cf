"""Keyword arguments users know (FineTuner's ``lora_r=...``, peft's ``TaskType``, bitsandbytes
quantization dicts, ``transformers.TrainingArguments``) -> tunesmith config keys.

Each function returns ``{dotted key: value}`` for ``TrainConfig.update_config``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from tunesmith.config.training_arguments import read_mapped, understood_fields
from tunesmith.errors import ConfigError


# -- keyword arguments -> config keys -----------------------------------------------------------
_TASK_TYPES = {"CAUSAL_LM": "causal_lm", "SEQ_CLS": "sequence_classification", "SEQ_2_SEQ_LM": "seq2seq",
               "SEQ2SEQ": "seq2seq", "SEQUENCE_CLASSIFICATION": "sequence_classification", "AUTO": "auto"}
_QUANT_KEYS = {"bnb_4bit_quant_type": "quant_type", "quant_type": "quant_type",
               "bnb_4bit_use_double_quant": "double_quant", "double_quant": "double_quant",
               "bnb_4bit_compute_dtype": "compute_dtype", "compute_dtype": "compute_dtype"}

def task_from_peft(task_type: Any) -> str:
    """``model.task`` for a peft ``TaskType`` member or name.

    Example:
        >>> task_from_peft("SEQ_CLS"), task_from_peft("causal_lm")
        ('sequence_classification', 'causal_lm')
    """
    name = getattr(task_type, "value", task_type)
    if not isinstance(name, str) or name.upper() not in _TASK_TYPES:
        raise ConfigError(f"lora_task_type: {task_type!r} is not supported; use CAUSAL_LM, SEQ_CLS or "
                          "SEQ_2_SEQ_LM (a peft TaskType or its name), or None to infer it from the model")
    return _TASK_TYPES[name.upper()]


def quantization_updates(quantization_config: Optional[dict[str, Any]], quantize: bool) -> dict[str, Any]:
    """Config keys for ``quantize`` / ``quantization_config`` (which implies quantizing).

    Example:
        >>> quantization_updates({"bnb_4bit_quant_type": "fp4"}, False)
        {'peft.quantization.quant_type': 'fp4', 'peft.method': 'qlora'}
    """
    if quantization_config is None:
        return {"peft.method": "qlora"} if quantize else {}
    if not isinstance(quantization_config, dict):
        raise ConfigError(f"quantization_config: expected a dict such as {{'bnb_4bit_quant_type': 'nf4'}}, "
                          f"got {type(quantization_config).__name__}")
    out: dict[str, Any] = {}
    bits8 = bool(quantization_config.get("load_in_8bit", False))
    if bits8 and quantization_config.get("load_in_4bit"):
        raise ConfigError("quantization_config: load_in_4bit and load_in_8bit are both set; choose one")
    for key, value in quantization_config.items():
        if key in ("load_in_8bit", "load_in_4bit"):
            continue
        if key not in _QUANT_KEYS:
            raise ConfigError(f"quantization_config.{key}: not supported; use one of "
                              f"{', '.join(sorted(_QUANT_KEYS))}, load_in_4bit or load_in_8bit")
        if _QUANT_KEYS[key] == "compute_dtype" and not isinstance(value, str):
            value = str(value).removeprefix("torch.")  # torch.bfloat16 -> "bfloat16"
        dotted = f"peft.quantization.{_QUANT_KEYS[key]}"
        if dotted in out and out[dotted] != value:
            raise ConfigError(f"quantization_config.{key}: {dotted} is set twice with different values")
        out[dotted] = value
    out["peft.method"] = "int8" if bits8 else "qlora"
    return out


def keyword_updates(*, model_id: Any = None, device: Optional[str] = None, dataset_name: Any = None,
                    lora_r: int = 16, lora_alpha: int = 32, lora_target_modules: Any = None,
                    lora_bias: str = "none", lora_task_type: Any = None, max_length: Optional[int] = None,
                    quantize: bool = False, quantization_config: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The ``update_config`` dict for ``FineTuner``'s keywords; keywords at their defaults are left out.

    Example:
        >>> keyword_updates(model_id="gpt2", lora_r=8, lora_target_modules="c_attn")
        {'model.name_or_path': 'gpt2', 'peft.r': 8, 'peft.target_modules': ['c_attn']}
    """
    out: dict[str, Any] = {}
    if model_id is not None:
        if not isinstance(model_id, (str, os.PathLike)):
            raise ConfigError(f"model_id: expected a model name, hub id or folder, got {model_id!r}")
        model_id = str(model_id)
        if model_id.startswith(("/", "./", "../", "~")) and not Path(model_id).expanduser().exists():
            raise ConfigError(f"model_id: the folder {model_id!r} does not exist")
        out["model.name_or_path"] = model_id
    if device is not None:
        out["model.device"] = device
    if dataset_name is not None:
        out["data.train"] = str(dataset_name)
    if lora_r != 16:
        out["peft.r"] = lora_r
    if lora_alpha != 32:
        out["peft.alpha"] = lora_alpha
    if lora_target_modules is not None:
        out["peft.target_modules"] = ([lora_target_modules] if isinstance(lora_target_modules, str)
                                      else list(lora_target_modules))
    if lora_bias != "none":
        out["peft.bias"] = lora_bias
    if lora_task_type is not None:
        out["model.task"] = task_from_peft(lora_task_type)
    if max_length is not None:  # one sequence length: training examples and generated answers
        out["data.max_length"] = max_length
        out["eval.max_new_tokens"] = max_length
    out.update(quantization_updates(quantization_config, quantize))
    return out


class DefaultTrainerConfig(dict):
    """``trainer_config`` written as keywords, with transformers' names or tunesmith's own keys.

    Every key and value is checked when it is built, so a typo fails here rather than at
    ``FineTuner``. It is a dict: ``FineTuner(trainer_config=...)`` and ``update_config`` take it.

    Example:
        ``FineTuner(trainer_config=DefaultTrainerConfig(output_dir="runs/a", num_train_epochs=3,
        save_total_limit=2)).config.train.save_limit`` -> ``2``
    """

    def __init__(self, **settings: Any) -> None:
        from tunesmith.config.update import check_updates

        check_updates(settings)
        super().__init__(settings)


def trainer_updates(trainer_config: Any) -> dict[str, Any]:
    """The ``update_config`` dict for ``trainer_config``: a dict as is, ``TrainingArguments`` mapped.

    Example:
        >>> trainer_updates({"lr": 1e-4})
        {'lr': 0.0001}
    """
    if trainer_config is None:
        return {}
    if isinstance(trainer_config, dict):
        return trainer_config
    if type(trainer_config).__module__.startswith("transformers") and hasattr(trainer_config, "to_dict"):
        return training_arguments_updates(trainer_config)
    raise ConfigError(f"trainer_config: expected a TrainConfig, a dict of config keys or a "
                      f"transformers.TrainingArguments, got {type(trainer_config).__name__}")


def training_arguments_updates(args: Any) -> dict[str, Any]:
    """Config keys for a ``transformers.TrainingArguments``; refuses fields tunesmith cannot honour.

    Every field of the one mapping (``config/training_arguments.py``) is taken, so transformers'
    defaults apply (e.g. 3 epochs); any other field set to a non-default value raises
    ``ConfigError`` naming it.

    Example:
        >>> from transformers import TrainingArguments
        >>> training_arguments_updates(TrainingArguments("out", learning_rate=1e-4))["train.lr"]
        0.0001
    """
    given = args.to_dict()
    default = type(args)(output_dir=args.output_dir).to_dict()
    handled = understood_fields()
    if given.get("use_cpu"):  # model.device=cpu; transformers then turns pinned memory off by itself
        handled.add("dataloader_pin_memory")
    unmapped = sorted(k for k in given if k not in handled and given[k] != default.get(k))
    if unmapped:
        shown = ", ".join(f"{k}={given[k]!r} (default {default.get(k)!r})" for k in unmapped)
        raise ConfigError(f"trainer_config: TrainingArguments field(s) {shown} have no tunesmith equivalent; "
                          "leave them at their defaults or set the tunesmith config key instead")
    out = read_mapped(given)
    if given["max_steps"] > 0 and given["num_train_epochs"] == default["num_train_epochs"]:
        del out["train.epochs"]  # a step limit alone: transformers' default epochs are not the user's
    elif given["max_steps"] <= 0:
        del out["train.max_steps"]  # epochs alone (transformers' default 3 when not given) set the length
    return out
