"""Other names for config keys, in one table: the names users know from transformers, peft and
other fine-tuning tools, each mapped to the one dotted key it stands for.

``ALIASES`` are accepted by ``update_config`` (``FineTuner(trainer_config={"learning_rate": 5e-4})``,
``cfg.update_config({"lr": 5e-4})``); ``SUGGESTED`` names are only suggested when a config file
uses them (``train.lerning_rate: unknown key. Did you mean 'train.lr'?``).
"""

from __future__ import annotations

from typing import Optional

from tunesmith.config.training_arguments import training_argument_aliases

# Names users know from peft and other tools -> the one dotted key each sets. The names of
# transformers' TrainingArguments come from the one mapping to them (config/training_arguments.py).
ALIASES: dict[str, str] = {
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "epochs": "train.epochs",
    "grad_accum": "train.grad_accum",
    "scheduler": "train.scheduler",
    "warmup_ratio": "train.warmup_ratio",
    "logging_dir": "train.logging_dir",
    "r": "peft.r",
    "lora_r": "peft.r",
    "alpha": "peft.alpha",
    "lora_alpha": "peft.alpha",
    "lora_dropout": "peft.dropout",
    "target_modules": "peft.target_modules",
    "lora_target_modules": "peft.target_modules",
    "method": "peft.method",
    "model": "model.name_or_path",
    "model_id": "model.name_or_path",
    "model_name_or_path": "model.name_or_path",
    "dataset": "data.train",
    "dataset_name": "data.train",
    "max_length": "data.max_length",
    "device": "model.device",
    **training_argument_aliases(),  # learning_rate, num_train_epochs, save_total_limit, ...
}

# Names from other tools (and common misspellings) that a config file may not use, but that the
# error names the right key for.
SUGGESTED: dict[str, str] = {
    "lerning_rate": "train.lr",
    "num_epochs": "train.epochs",
    "micro_batch_size": "train.batch_size",
    "lr_scheduler": "train.scheduler",
    "warmup": "train.warmup_ratio",
    "rank": "peft.r",
    "model_name": "model.name_or_path",
    "cutoff_len": "data.max_length",
    "sequence_len": "data.max_length",
}


def key_in_section(name: str) -> Optional[str]:
    """The key inside its section that ``name`` stands for, when it is another name.

    Example:
        >>> key_in_section("learning_rate"), key_in_section("lr"), key_in_section("colour")
        ('lr', None, None)
    """
    dotted = ALIASES.get(name) or SUGGESTED.get(name)
    if dotted is None or "." not in dotted:
        return None
    leaf = dotted.rsplit(".", 1)[1]
    return leaf if leaf != name else None
