"""GRPO end to end on a tiny random Llama: prompt rows from arith-prompts, held-out exact match before
and after, the reward logs and curve; and prompt data refused by trainers that need answers."""

import json

import pytest

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.errors import ConfigError


def grpo_config(model_dir, out_dir, *extra):
    return load_config(overrides=[
        f"model.name_or_path={model_dir}", "train=grpo", "data=arith-prompts", "data.max_samples=8",
        f"output_dir={out_dir}", "train.max_steps=2", "train.batch_size=2", "train.grpo.group_size=2",
        "train.grpo.max_new_tokens=6", "train.save_steps=0", "train.precision=bf16", "train.logging_steps=1",
        "eval.max_samples=2", "eval.max_new_tokens=6", *extra])


def test_grpo_run_end_to_end(chatty_llama_dir, tmp_path):
    result = FineTuner(grpo_config(chatty_llama_dir, tmp_path / "grpo", "train.grpo.kl_weight=0.05")).train()
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["plan"]["trainer"] == "grpo" and record["plan"]["rows"] == "prompt"
    assert record["plan"]["packing"] == "none" and record["speed"]["attention"] != "segments"
    assert record["plan"]["reference"] == "adapter_off" and record["metric"] == "exact_match"
    logs = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in logs if "loss" in r]
    assert len(trained) == 2
    assert all({"reward", "reward_std", "reward/exact_match", "completion_length", "kl"} <= set(r) for r in trained)
    assert (result.run_dir / "reward_curve.png").is_file()


def test_sft_on_prompt_rows_is_refused(tiny_llama_dir, tmp_path):
    cfg = load_config(overrides=[f"model.name_or_path={tiny_llama_dir}", "data=arith-prompts", "data.max_samples=8",
                                 f"output_dir={tmp_path / 'x'}", "train.max_steps=1", "eval.before_after=off"])
    with pytest.raises(ConfigError, match="the data holds prompts without answers.*train.trainer=grpo"):
        FineTuner(cfg).train()
