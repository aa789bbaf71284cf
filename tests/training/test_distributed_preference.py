"""Preference and RL training on two processes (torchrun, gloo on the CPU).

``dpo``: two processes with 2 pairs each train exactly like one process with 4 pairs: the same
loss curve, the same logged preference means and the same final adapter. ``grpo`` samples its
completions on each process with a seed of its own (``train.seed``, step, micro-batch, process), so
its curve cannot equal a one-process run's (see docs/training.md); what must hold is tested: the run
completes with one writer, the two processes sample different completions for the same prompt, and
the logged means are averaged over both processes.
"""

import json
import os
import sys

import pytest
import torch
from safetensors.torch import load_file

from process_runs import records, run  # tests/training is on sys.path (its conftest)

pytestmark = pytest.mark.slow

STEPS = 4
# Two processes vs one: the same pairs averaged in a different order (gradients are averaged across
# processes), so the curves and weights agree to float32 rounding.
TOLERANCE = 1e-5


def command(*launcher, model_dir, out, batch_size, job="dpo", data="arith-pref"):
    jobs = {"dpo": ["train.trainer=dpo", "train.preference.sft_weight=0.1"],
            "grpo": ["train=grpo", "train.grpo.group_size=2", "train.grpo.max_new_tokens=4", "train.grpo.kl_weight=0.05",
                     "train.grpo.reward_weights=[]"]}
    return [*launcher, "-m", "tunesmith", "train", f"model.name_or_path={model_dir}", *jobs[job],
            f"data.train={data}", "data.max_samples=16", f"output_dir={out}", f"train.max_steps={STEPS}",
            f"train.batch_size={batch_size}", "train.lr=5e-3", "train.logging_steps=1", "train.save_steps=0",
            "train.precision=fp32", "train.warmup_ratio=0.0", "train.warmup_steps=0", "eval.before_after=off",
            "data.cache=false"]



def torchrun(port):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]


def test_dpo_on_two_processes_matches_one_process_with_the_same_global_batch(chatty_llama_dir, tmp_path):
    two = run(command(*torchrun(29543), model_dir=chatty_llama_dir, out=tmp_path / "two", batch_size=2), tmp_path)
    run(command(sys.executable, model_dir=chatty_llama_dir, out=tmp_path / "one", batch_size=4), tmp_path)
    assert two.stdout.count("Run directory:") == 1  # one process prints
    assert "2 sequences x 1 accumulation x 2 processes = 4 sequences per optimizer step" in two.stdout
    a, b = ([r for r in records(tmp_path / d) if "loss" in r] for d in ("two", "one"))
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, STEPS + 1))  # one writer
    compared = [k for k in b[0] if k == "loss" or k.startswith(("rewards/", "logps/"))]
    assert {"loss", "rewards/accuracy", "rewards/margin", "logps/chosen"} <= set(compared)
    for x, y in zip(a, b):
        for key in compared:
            assert x[key] == pytest.approx(y[key], abs=TOLERANCE, rel=TOLERANCE), (x["step"], key)
    wa, wb = (load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in ("two", "one"))
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=TOLERANCE, rtol=0), name
    assert any(w.abs().max() > 0 for name, w in wa.items() if "lora_B" in name)  # it trained


# A reward that records what each process sampled: one line per call, in the process's own file.
RECORDING_REWARD = '''
import json, os

def length(completions, references, prompts):
    rewards = [float(len(c)) for c in completions]
    with open(f"samples-{os.environ.get('RANK', '0')}.jsonl", "a") as f:
        f.write(json.dumps({"completions": completions, "rewards": rewards}) + "\\n")
    return rewards
'''


def test_grpo_on_two_processes_samples_per_process_and_averages_its_logs(chatty_llama_dir, tmp_path):
    """One prompt repeated: both processes hold the same prompt at every step, so equal completions
    would mean they draw from one seed. The logged reward is the mean over both processes."""
    (tmp_path / "recording_reward.py").write_text(RECORDING_REWARD)
    rows = tmp_path / "prompts.jsonl"
    rows.write_text("\n".join(json.dumps({"prompt": "Count to ten.", "answer": "10"}) for _ in range(16)))
    done = run(command(*torchrun(29545), model_dir=chatty_llama_dir, out=tmp_path / "two", batch_size=2,
                       job="grpo", data=rows) + ["data.format=prompt_only", "train.grpo.rewards=[recording_reward:length]"],
               tmp_path)
    assert done.stdout.count("Run directory:") == 1
    logs = [r for r in records(tmp_path / "two") if "loss" in r]
    assert [r["step"] for r in logs] == list(range(1, STEPS + 1))  # one writer
    assert all({"reward", "reward_std", "kl", "completion_length"} <= set(r) for r in logs)
    calls = [[json.loads(line) for line in (tmp_path / f"samples-{rank}.jsonl").read_text().splitlines()]
             for rank in (0, 1)]
    assert len(calls[0]) == len(calls[1]) == STEPS  # one micro-batch per step on each process
    assert all(a["completions"] != b["completions"] for a, b in zip(*calls))  # a seed per process
    for log, a, b in zip(logs, *calls):
        mean = (sum(a["rewards"]) / len(a["rewards"]) + sum(b["rewards"]) / len(b["rewards"])) / 2
        assert log["reward"] == pytest.approx(mean, rel=1e-6)
