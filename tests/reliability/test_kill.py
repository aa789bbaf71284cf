"""Kill tests: ``kill -9`` at random moments (at start-up, during training, while a checkpoint is
being written) always leaves every checkpoint folder complete and loadable, and the resumed run ends
exactly where an unbroken run ends. SIGTERM / SIGINT save a checkpoint, say where, and exit 143 / 130.

``TUNESMITH_KILL_TRIALS`` (default 12) sets the number of kills, ``TUNESMITH_KILL_SEED`` their
random moments. Trials run in children of a forkserver that has torch and transformers imported,
so each starts in about a second.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.training.checkpoints import incomplete_reason

from kill_trials import (check_every_checkpoint_loads, finish, forkserver_context, kill_at_random_moments,
                         newest_step, start, wait_for)
from reliability_checks import assert_same_run

TRIALS = int(os.environ.get("TUNESMITH_KILL_TRIALS", "12"))
SEED = int(os.environ.get("TUNESMITH_KILL_SEED", "1234"))
STEPS = max(32, 2 * TRIALS)  # long enough that the run outlasts the trials, even on a fast idle CPU


@pytest.fixture(scope="module")
def forkserver():
    """A multiprocessing context whose children start with torch, transformers and tunesmith imported."""
    return forkserver_context()


def test_kill_9_at_random_moments_never_breaks_a_checkpoint(forkserver, overrides, tmp_path):
    from tunesmith.api import FineTuner
    from tunesmith.config import load_config

    extra = (f"train.max_steps={STEPS}", "train.save_limit=2")
    reference = tmp_path / "reference"
    FineTuner(load_config(overrides=overrides(reference, *extra))).train()

    out, log = tmp_path / "run", tmp_path / "run.log"
    argv = overrides(out, *extra)
    kills, caught_writing = kill_at_random_moments(forkserver, argv, out, log, TRIALS, SEED)

    print(f"kill -9 trials: {kills}; {caught_writing} landed while a checkpoint was being written")
    assert sum(kills.values()) >= min(TRIALS, 6) and caught_writing >= 1

    finish(forkserver, argv, out, log)
    assert check_every_checkpoint_loads(out) <= 2  # train.save_limit=2 held throughout

    assert_same_run(reference, out, list(range(1, STEPS + 1)))


def _signal_run(out: Path, overrides, sig: int, via_cli: bool, forkserver, log: Path) -> tuple[int, str]:
    """Start a run that saves no periodic checkpoints, send ``sig`` once it is training, wait for it."""
    argv = overrides(out, "train.save_steps=0", "train.max_steps=30")
    logged = lambda: (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().count('"loss"') >= 2
    if via_cli:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        with open(log, "w", encoding="utf-8") as sink:
            child = subprocess.Popen([sys.executable, "-m", "tunesmith", "train", *argv], stdout=sink,
                                     stderr=subprocess.STDOUT, env=env)
            assert wait_for(lambda: logged() or child.poll() is not None, timeout=300), "training never started"
            child.send_signal(sig)
            code = child.wait(timeout=300)
    else:
        child = start(forkserver, argv, log, {})
        assert wait_for(lambda: logged() or not child.is_alive(), timeout=300), "training never started"
        os.kill(child.pid, sig)
        child.join(timeout=300)
        code = child.exitcode
    return code, log.read_text(encoding="utf-8")


def test_sigterm_saves_says_where_and_exits_143(forkserver, overrides, tmp_path):
    from tunesmith.api import FineTuner
    from tunesmith.config import load_config

    out = tmp_path / "run"
    code, text = _signal_run(out, overrides, signal.SIGTERM, True, forkserver, tmp_path / "cli.log")
    assert code == 143, text[-3000:]
    found = re.search(r"SIGTERM: training stopped at step (\d+); checkpoint saved to (\S+) \(step (\d+)\)", text)
    assert found, text[-3000:]
    step, path = int(found.group(1)), Path(found.group(2))
    assert step == int(found.group(3)) and path == out / "checkpoints" / f"checkpoint-{step}"
    assert incomplete_reason(path) is None and not (out / "run.json").exists()
    check_every_checkpoint_loads(out)

    result = FineTuner(load_config(overrides=overrides(out, "train.save_steps=0", "train.max_steps=30"))).train()
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["global_step"] == 30
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line]
    assert steps == sorted(set(steps)) and steps[-1] == 30  # the curve continues without repeats


def test_sigint_saves_and_exits_130(forkserver, overrides, tmp_path):
    out = tmp_path / "run"
    code, text = _signal_run(out, overrides, signal.SIGINT, False, forkserver, tmp_path / "child.log")
    assert code == 130, text[-3000:]
    assert "SIGINT: training stopped at step" in text and "checkpoint saved to" in text
    assert newest_step(out) >= 2 and check_every_checkpoint_loads(out) == 1
