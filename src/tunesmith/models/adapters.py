"""Fine-tuning methods: LoRA and DoRA adapters through peft, or full fine-tuning."""

from __future__ import annotations

from typing import Any

from tunesmith.config.schema import PeftConfig
from tunesmith.errors import ConfigError

PEFT_TASK_TYPES = {"causal_lm": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "sequence_classification": "SEQ_CLS"}


def target_modules_arg(names: list[str]) -> str | list[str]:
    """``["all-linear"]`` -> ``"all-linear"`` (peft's shorthand: every linear layer but the head)."""
    return "all-linear" if names == ["all-linear"] else list(names)


def apply_adapter(model: Any, cfg: PeftConfig, task: str) -> Any:
    """Wrap ``model`` for training with ``cfg.method``; returns the model to train."""
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=target_modules_arg(cfg.target_modules),
        task_type=PEFT_TASK_TYPES[task],
        use_dora=cfg.method == "dora",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as err:  # peft names the modules it could not find
        raise ConfigError(f"peft.target_modules: {cfg.target_modules!r} does not fit this model: {err}") from err


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
