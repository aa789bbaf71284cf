"""Child-process side of the kill tests: run ``tunesmith train`` with its output in a log file.

Imported by a forkserver that has torch and transformers loaded already, so each trial starts in
about a second instead of re-importing everything.
"""

from __future__ import annotations

import os
import sys


def run_cli(argv: list[str], log_path: str, env: dict[str, str]) -> None:
    """``tunesmith ARGV`` with stdout and stderr appended to ``log_path``; exits with its code."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(env)
    from tunesmith.cli.main import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no atexit work: the parent only reads the exit code and the files
