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


def grpo_trainer_inputs(cfg: TrainConfig, trainer_name: str) -> dict[str, Any]:
    """For a grpo run: ``grpo`` (the settings) and ``rewards`` (the built reward functions); ``{}``
    for other trainers. (Its prompt rows are batched by ``PromptCollator``, chosen by the rows' kind.)"""
    if trainer_name != GRPO:
        return {}
    from tunesmith.evaluation.rewards import build_rewards

    return {"grpo": cfg.train.grpo, "rewards": build_rewards(cfg.train.grpo)}
