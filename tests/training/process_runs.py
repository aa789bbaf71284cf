"""Helpers of the multi-process tests: run a launcher command offline, read a run's logged losses."""

import json
import os
import subprocess
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def run(command, cwd):
    """Run ``command`` in ``cwd`` offline with one thread per process; fails the test on a non-zero exit
    (showing the end of its output). Modules in ``cwd`` (a test's reward functions) can be imported."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(cwd), str(SRC)])}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def records(run_dir):
    """Every line of the run's metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def losses(run_dir):
    """``(step, loss)`` of every logged training loss."""
    return [(r["step"], r["loss"]) for r in records(run_dir) if "loss" in r]
