"""What a ``train.trainer=grpo`` run adds to the trainer: its settings, its reward functions and the
prompt collator. Kept apart from the other trainers' wiring; ``train_job`` merges the result into
the trainer's inputs."""

from __future__ import annotations

from typing import Any

from tunesmith.config import TrainConfig

GRPO = "grpo"


def check_grpo(cfg: TrainConfig) -> None:
    """Resolve ``train.grpo.rewards`` (names, dotted paths, ``reward_args``) before anything is loaded;
    nothing to check for other trainers."""
    if cfg.train.trainer == GRPO:
        from tunesmith.evaluation.rewards import check_rewards

        check_rewards(cfg.train.grpo)


def grpo_trainer_inputs(cfg: TrainConfig, trainer_name: str, tokenizer: Any, device: str) -> dict[str, Any]:
    """For a grpo run: ``grpo`` (the settings), ``rewards`` (the built reward functions) and the
    ``data_collator`` that left-pads prompt rows; ``{}`` for other trainers."""
    if trainer_name != GRPO:
        return {}
    from tunesmith.data.collators import pad_multiple_for_device
    from tunesmith.data.prompt_batches import PromptCollator
    from tunesmith.evaluation.rewards import build_rewards

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return {"grpo": cfg.train.grpo, "rewards": build_rewards(cfg.train.grpo),
            "data_collator": PromptCollator(pad, pad_multiple_for_device(device))}
