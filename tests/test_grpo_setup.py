"""The grpo wiring: reward names checked with the other components, the trainer's extra inputs, and
the reward curves of a run."""

import pytest

from tunesmith.api.components import check_components
from tunesmith.api.grpo_setup import grpo_trainer_inputs
from tunesmith.config import load_config
from tunesmith.data.prompt_batches import PromptCollator
from tunesmith.errors import ConfigError
from tunesmith.reporting.plots import plot_reward_curves


def test_the_packaged_grpo_job_checks():
    cfg = load_config(overrides=["train=grpo"])
    assert cfg.train.trainer == "grpo" and cfg.train.grpo.rewards == ["exact_match", "number_format"]
    check_components(cfg)


def test_an_unknown_reward_fails_before_anything_loads():
    cfg = load_config(overrides=["train=grpo", "train.grpo.rewards=[exact_mach]", "train.grpo.reward_weights=[]"])
    with pytest.raises(ConfigError, match="train.grpo.rewards: unknown reward function 'exact_mach'"):
        check_components(cfg)


def test_grpo_inputs_only_for_grpo(smol_tokenizer):
    from tunesmith.api.choices.batching import build_collator
    from tunesmith.data.preference_collators import preference_collator

    cfg = load_config(overrides=["train=grpo"])
    inputs = grpo_trainer_inputs(cfg, "grpo")
    assert inputs["grpo"] is cfg.train.grpo
    assert isinstance(preference_collator("prompt", build_collator("auto", "causal_lm", smol_tokenizer)),
                      PromptCollator)
    assert [r.name for r in inputs["rewards"]] == ["exact_match", "number_format"]
    assert [r.weight for r in inputs["rewards"]] == [1.0, 0.2]
    assert grpo_trainer_inputs(cfg, "sft") == {}


def test_reward_curves(tmp_path):
    records = [{"step": s, "loss": 0.1, "reward": s / 10, "reward/exact_match": s / 20, "kl": 0.01 * s,
                "completion_length": 40 + s} for s in range(1, 4)]
    assert plot_reward_curves(records, tmp_path / "r.png").stat().st_size > 0
    assert plot_reward_curves([{"step": 1, "loss": 1.0}], tmp_path / "none.png") is None
