"""Kill tests of the preference and RL trainers: a ``dpo`` and a ``grpo`` run on a tiny model are
killed with SIGKILL at random moments (at start-up, during training, while a checkpoint is being
written) and started again each time; every checkpoint stays complete and loadable, and the finished
run logs the same loss curve, the same reward and preference means and ends with the same weights
as an unbroken run.

``TUNESMITH_KILL_TRIALS`` (default 8 here) and ``TUNESMITH_KILL_SEED`` work as in ``test_kill.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kill_trials import check_every_checkpoint_loads, finish, forkserver_context, kill_at_random_moments
from reliability_checks import TOLERANCE, assert_same_run, weights

TRIALS = int(os.environ.get("TUNESMITH_KILL_TRIALS", "8"))
SEED = int(os.environ.get("TUNESMITH_KILL_SEED", "1234"))
STEPS = max(24, 2 * TRIALS)  # long enough that the run outlasts the trials
JOBS = {
    "dpo": ["train.trainer=dpo", "data.train=arith-pref", "train.preference.sft_weight=0.1"],
    "grpo": ["train=grpo", "data.train=arith-prompts", "train.grpo.group_size=2", "train.grpo.max_new_tokens=4",
             "train.grpo.kl_weight=0.05", "train.grpo.rewards=[answer_length]", "train.grpo.reward_weights=[]",
             # A random model never writes the right number: a reward on the completion's length
             # differs within each group, so every step has an advantage to follow and the weights move.
             "train.grpo.reward_args={answer_length: {max_chars: 0, per_char: 0.05, cap: 10.0}}"],
}
# What each trainer logs besides the loss that must survive the kills: the reward and preference means.
MEANS = {"dpo": ("rewards/", "logps/", "logits/"), "grpo": ("reward", "kl", "completion")}
NOT_COMPARED = ("runtime", "per_second", "memory", "time")  # wall-clock and host numbers differ by nature


def overrides(model_dir: Path, out_dir: Path, job: str) -> list[str]:
    """A seconds-long CPU run of ``job`` that checkpoints after every step and keeps two checkpoints."""
    return [f"model.name_or_path={model_dir}", *JOBS[job], "data.max_samples=12", f"output_dir={out_dir}",
            f"train.max_steps={STEPS}", "train.batch_size=2", "train.grad_accum=2", "train.logging_steps=1",
            "train.save_steps=1", "train.save_limit=2", "train.precision=fp32", "train.warmup_ratio=0.0",
            "train.warmup_steps=0", "train.lr=5e-3", "train.num_threads=1", "eval.before_after=off",
            "data.cache=false"]


def logged_means(run_dir: Path, prefixes: tuple[str, ...]) -> dict[tuple[int, str], float]:
    """(step, key) -> the value of every logged number whose key starts with one of ``prefixes``."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if (key.startswith(prefixes) and isinstance(value, (int, float))
                    and not any(word in key for word in NOT_COMPARED)):
                assert (record["step"], key) not in out, f"{key} logged twice at step {record['step']}"
                out[record["step"], key] = value
    return out


@pytest.fixture(scope="module")
def forkserver():
    """A multiprocessing context whose children start with torch, transformers and tunesmith imported."""
    return forkserver_context()


@pytest.mark.parametrize("job", sorted(JOBS))
def test_kill_9_preference_run_resumes_to_an_unbroken_run(forkserver, chatty_llama_dir, tmp_path, job):
    from tunesmith.api import FineTuner
    from tunesmith.config import load_config

    unbroken = tmp_path / "unbroken"
    FineTuner(load_config(overrides=overrides(chatty_llama_dir, unbroken, job))).train()

    out, log = tmp_path / "run", tmp_path / "run.log"
    argv = overrides(chatty_llama_dir, out, job)
    kills, caught_writing = kill_at_random_moments(forkserver, argv, out, log, TRIALS, SEED)
    print(f"{job} kill -9 trials: {kills}; {caught_writing} landed while a checkpoint was being written")
    assert sum(kills.values()) >= min(TRIALS, 5) and caught_writing >= 1

    finish(forkserver, argv, out, log)
    assert check_every_checkpoint_loads(out) <= 2  # train.save_limit=2 held throughout
    assert_same_run(unbroken, out, list(range(1, STEPS + 1)))
    means, again = logged_means(unbroken, MEANS[job]), logged_means(out, MEANS[job])
    assert {key for _, key in means} >= {"dpo": {"rewards/accuracy", "rewards/margin"},
                                        "grpo": {"reward"}}[job], sorted({key for _, key in means})
    assert again.keys() == means.keys()
    assert any(value != 0 for (_, key), value in means.items() if key in ("rewards/margin", "reward_std"))
    assert any(w.abs().max() > 0 for name, w in weights(out).items() if "lora_B" in name)  # it trained
    for at, value in means.items():
        assert again[at] == pytest.approx(value, abs=TOLERANCE, rel=0), at
