"""Exact resume of the preference and RL trainers: a dpo or grpo run cut short in the middle of a
gradient accumulation and resumed ends with the same curve and weights as an unbroken run."""

from __future__ import annotations

import json

import pytest

from transformers import TrainerCallback

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.training import register_callback
from tunesmith.training.checkpoints import complete_checkpoints

from reliability_checks import assert_same_run


class PreferenceCrash(RuntimeError):
    """Raised by the test callback to cut a run short."""


@register_callback("test_preference_crash_after", overwrite=True)
class CrashAfter(TrainerCallback):
    """Crash after the first micro-batch of the optimizer step that follows ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_substep_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise PreferenceCrash(f"simulated crash in the middle of step {self.step + 1}")

STEPS = [1, 2, 4, 6]
JOBS = {
    "dpo": ["train.trainer=dpo", "data.train=arith-pref", "train.preference.sft_weight=0.1"],
    "grpo": ["train=grpo", "data.train=arith-prompts", "train.grpo.group_size=2", "train.grpo.max_new_tokens=4",
             "train.grpo.kl_weight=0.05", "train.lr=5e-3"],
}


def overrides(model_dir, out_dir, job, *extra):
    return [f"model.name_or_path={model_dir}", *JOBS[job], "data.max_samples=12", f"output_dir={out_dir}",
            "train.max_steps=6", "train.batch_size=2", "train.grad_accum=2", "train.logging_steps=2",
            "train.save_steps=1", "train.precision=fp32", "train.warmup_ratio=0.0", "train.warmup_steps=0",
            "train.num_threads=1", "eval.before_after=off", "data.cache=false", *extra]


def train(items):
    return FineTuner(load_config(overrides=items)).train()


@pytest.mark.parametrize("job", sorted(JOBS))
def test_resumed_preference_run_matches_an_unbroken_one(chatty_llama_dir, tmp_path, job):
    unbroken = tmp_path / "unbroken"
    train(overrides(chatty_llama_dir, unbroken, job))
    out = tmp_path / "run"
    with pytest.raises(PreferenceCrash):
        train(overrides(chatty_llama_dir, out, job, "train.callbacks=[test_preference_crash_after]",
                        "train.callback_args={test_preference_crash_after: {step: 3}}"))
    assert [c.step for c in complete_checkpoints(out / "checkpoints")] == [1, 2, 3]
    train(overrides(chatty_llama_dir, out, job))  # the same command again continues from step 3
    assert_same_run(unbroken, out, STEPS)
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    key = "rewards/accuracy" if job == "dpo" else "reward"
    first = {r["step"]: r[key] for r in logs if key in r}
    again = {r["step"]: r[key] for r in (json.loads(line) for line in
                                          (unbroken / "metrics.jsonl").read_text().splitlines()) if key in r}
    assert first == pytest.approx(again, abs=1e-6)  # the logged means survive the break too
