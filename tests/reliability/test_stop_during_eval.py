"""A stop request during an evaluation inside training (``train.eval_steps``) ends it at the next
batch, saves the step's checkpoint and exits within seconds, not after the whole evaluation."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tunesmith.training.checkpoints import incomplete_reason

EVAL_ROWS = 6000  # one example per batch: far more than 10 s of evaluation on this CPU


def sigterm_once(argv: list[str], log: Path, ready, wait_s: float = 1.0) -> tuple[int, float, str]:
    """Run ``tunesmith train ARGV`` as a process, send SIGTERM ``wait_s`` seconds after ``ready()``
    holds; its exit code, the seconds it took to exit after the signal, and its output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with open(log, "w", encoding="utf-8") as sink:
        child = subprocess.Popen([sys.executable, "-m", "tunesmith", "train", *argv], stdout=sink,
                                 stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while not ready() and child.poll() is None:
            assert time.monotonic() < deadline, "the moment to signal never came"
            time.sleep(0.05)
        time.sleep(wait_s)
        child.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            code = child.wait(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
        took = time.monotonic() - sent
    return code, took, log.read_text(encoding="utf-8")


def test_sigterm_during_evaluation_saves_and_exits_within_10_s(overrides, tmp_path):
    eval_file = tmp_path / "eval.jsonl"
    rows = [{"instruction": f"Add {i} and {i + 1}.", "output": f"{i} + {i + 1} = {2 * i + 1}\n#### {2 * i + 1}"}
            for i in range(EVAL_ROWS)]
    eval_file.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    argv = overrides(out, "train.save_steps=0", "train.max_steps=30", "train.eval_steps=1", f"data.eval={eval_file}",
                     "train.batch_size=1", "train.grad_accum=1")
    metrics = out / "metrics.jsonl"
    # The first step's loss is logged just before its evaluation starts.
    logged = lambda: metrics.is_file() and '"loss"' in metrics.read_text()  # noqa: E731
    code, took, text = sigterm_once(argv, tmp_path / "cli.log", logged)
    assert code == 143, text[-3000:]
    assert took < 10, f"exited {took:.1f} s after SIGTERM"
    found = re.search(r"SIGTERM: training stopped at step (\d+); checkpoint saved to (\S+) \(step (\d+)\)", text)
    assert found, text[-3000:]
    step = int(found.group(1))
    assert step == 1 and incomplete_reason(Path(found.group(2))) is None
    assert "eval_loss" not in metrics.read_text()  # the evaluation was cut short, not finished


def test_sigterm_while_measuring_the_base_model_stops_at_once_with_a_message(overrides, tmp_path):
    out = tmp_path / "run"
    eval_file = tmp_path / "eval.jsonl"  # one prompt per batch: minutes of evaluation, even on a fast CPU
    eval_file.write_text("\n".join(json.dumps({"instruction": f"Add {i} and 1.", "output": f"#### {i + 1}"})
                                   for i in range(500)) + "\n", encoding="utf-8")
    argv = overrides(out, "eval.before_after=on", "eval.max_samples=500", "eval.max_new_tokens=400",
                     "eval.batch_size=1", f"data.eval={eval_file}", "eval.metric=exact_match")
    log = tmp_path / "cli.log"
    code, took, text = sigterm_once(argv, log, lambda: "Evaluating base model" in log.read_text(encoding="utf-8"))
    assert code == 143, text[-3000:]
    assert took < 10, f"exited {took:.1f} s after SIGTERM"
    assert "stopped: SIGTERM: stopped while measuring the base model; nothing was trained yet" in text
    assert "Traceback" not in text
