"""Parent-process side of the kill tests: start ``tunesmith train`` in forkserver children, kill
them with SIGKILL at random moments, and check the checkpoints each kill leaves behind.

Shared by ``test_kill.py`` (SFT) and ``test_kill_preference.py`` (dpo, grpo).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from tunesmith.training.checkpoints import STAGING, incomplete_reason, newest_checkpoint

from kill_driver import DELAY_ENV

KINDS = ("startup", "training", "training", "writing", "writing")  # drawn at random for each trial
WRITE_PAUSE_S = "0.4"  # TUNESMITH_TEST_CHECKPOINT_DELAY in "writing" trials: the write takes this much longer


def forkserver_context():
    """A multiprocessing context whose children start with torch, transformers and tunesmith imported."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "transformers", "peft", "tunesmith.api", "tunesmith.cli.main",
                                "kill_driver"])
    return ctx  # kill_driver is importable there: conftest puts this folder on sys.path


def start(ctx, argv: list[str], log: Path, env: dict[str, str]):
    """Start ``tunesmith train ARGV`` in a child of ``ctx`` with its output appended to ``log``."""
    import kill_driver

    process = ctx.Process(target=kill_driver.run_cli, args=(["train", *argv], str(log), env))
    process.start()
    return process


def wait_for(condition, timeout: float = 180.0) -> bool:
    """Poll ``condition`` every 10 ms until it holds (True) or ``timeout`` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return False


def newest_step(out: Path) -> int:
    """The step of the newest complete checkpoint of run ``out``; 0 when there is none."""
    newest = newest_checkpoint(out / "checkpoints")
    return newest.step if newest else 0


def check_every_checkpoint_loads(out: Path) -> int:
    """Every ``checkpoint-N`` folder is complete and each of its files loads; returns how many there are."""
    from transformers.trainer_pt_utils import safe_globals

    folders = sorted((out / "checkpoints").glob("checkpoint-*")) if (out / "checkpoints").is_dir() else []
    for path in folders:
        assert incomplete_reason(path) is None, f"{path}: {incomplete_reason(path)}"
        assert load_file(str(path / "adapter_model.safetensors"))
        torch.load(path / "optimizer.pt", weights_only=True)
        torch.load(path / "scheduler.pt", weights_only=True)
        with safe_globals():  # numpy's RNG state, allowed the way transformers allows it
            torch.load(path / "rng_state.pth", weights_only=True)
        state = json.loads((path / "trainer_state.json").read_text())
        assert f"checkpoint-{state['global_step']}" == path.name
    return len(folders)


def kill_at_random_moments(ctx, argv: list[str], out: Path, log: Path, trials: int, seed: int) -> tuple[dict, int]:
    """Start the run ``argv`` (into ``out``) up to ``trials`` times and SIGKILL it each time at a
    random moment: during start-up, during training, or while a checkpoint is being written. After
    every kill every checkpoint must load and the newest must be no older than before.

    Returns the kills of each kind and how many landed while a checkpoint was half-written.
    """
    rng = random.Random(seed)
    kills = {"startup": 0, "training": 0, "writing": 0}
    caught_writing = 0
    for _ in range(trials):
        if (out / "run.json").exists():
            break  # the run finished within the trials
        kind = rng.choice(KINDS)
        before = newest_step(out)
        child = start(ctx, argv, log, {DELAY_ENV: WRITE_PAUSE_S if kind == "writing" else "0"})
        if kind == "startup":
            time.sleep(rng.uniform(0.0, 2.0))
        elif kind == "training":  # some time after the run has saved a new checkpoint
            wait_for(lambda: newest_step(out) > before or not child.is_alive())
            time.sleep(rng.uniform(0.0, 1.0))
        else:  # while the next checkpoint is being written
            wait_for(lambda: any((out / "checkpoints" / STAGING).glob("checkpoint-*")) or not child.is_alive())
            time.sleep(rng.uniform(0.0, 0.3))
        if not child.is_alive():
            child.join()
            assert child.exitcode == 0, log.read_text()[-3000:]
            break
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL
        kills[kind] += 1
        caught_writing += any((out / "checkpoints" / STAGING).glob("checkpoint-*"))  # a half-written one
        check_every_checkpoint_loads(out)
        assert newest_step(out) >= before  # an older checkpoint never replaces a newer one
    return kills, caught_writing


def finish(ctx, argv: list[str], out: Path, log: Path) -> None:
    """Unless a trial already finished the run: start it once more and let it finish."""
    if not (out / "run.json").exists():
        final = start(ctx, argv, log, {})
        final.join()
        assert final.exitcode == 0, log.read_text()[-3000:]
