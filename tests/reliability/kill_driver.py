"""Child-process side of the kill tests: run ``tunesmith train`` with its output in a log file.

Imported by a forkserver that has torch and transformers loaded already, so each trial starts in
about a second instead of re-importing everything.
"""

from __future__ import annotations

import os
import sys
import time

# Seconds each checkpoint write pauses half-way (weights written, optimizer state not yet), so a kill
# lands inside the write.
DELAY_ENV = "TUNESMITH_TEST_CHECKPOINT_DELAY"


def slow_checkpoint_writes(delay: float) -> None:
    """Make every checkpoint write of this process pause ``delay`` seconds before the optimizer state."""
    from transformers import Trainer

    save_optimizer = Trainer._save_optimizer_and_scheduler

    def slow(self, output_dir: str) -> None:
        time.sleep(delay)
        save_optimizer(self, output_dir)

    Trainer._save_optimizer_and_scheduler = slow


def run_cli(argv: list[str], log_path: str, env: dict[str, str]) -> None:
    """``tunesmith ARGV`` with stdout and stderr appended to ``log_path``; exits with its code."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(env)
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    if delay > 0:
        slow_checkpoint_writes(delay)
    from tunesmith.cli.main import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no atexit work: the parent only reads the exit code and the files
