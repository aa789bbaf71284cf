"""Resident memory per training step: does a long run stay flat?

Runs tunesmith's default job (SmolLM2-135M, LoRA, the built-in ``arith`` data) for ``--steps``
optimizer steps in a fresh process per variant, records the resident set size (RSS) after every
step, and prints it every ``--every`` steps with a summary: RSS at step 20, at the end, the growth
between them and the peak. Variants are config overrides and/or environment variables, so
allocator settings (``LD_PRELOAD``, ``MALLOC_*``) can be compared with the batch layout:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/memory_growth.py --steps 200
    HF_HUB_OFFLINE=1 .venv/bin/python bench/memory_growth.py --steps 60 \\
        --variant padded:data.packing=none --variant trim-off:train.memory_trim=off

A variant is ``NAME[:KEY=VALUE,...][@ENV=VALUE,...]``. Default: the defaults (padding-free rows)
and ``data.packing=none`` (padded rows). Timings are not the point here; RSS is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_VARIANTS = ["padding-free", "padded:data.packing=none"]


def rss_mb() -> float:
    """This process's resident set size in MiB (Linux), from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(overrides: list[str], steps: int, out: str) -> int:
    import tunesmith.api.train_job as train_job
    from transformers import TrainerCallback

    from tunesmith.api import FineTuner
    from tunesmith.config import load_config

    record: list[float] = []

    class Rss(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            record.append(round(rss_mb(), 1))

    build = train_job._build_trainer

    def build_with_probe(*args: Any, **kwargs: Any) -> Any:
        trainer = build(*args, **kwargs)
        trainer.add_callback(Rss())
        return trainer

    train_job._build_trainer = build_with_probe
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        cfg = load_config(overrides=[f"output_dir={tmp}/run", "eval.before_after=off", f"train.max_steps={steps}",
                                     *overrides])
        FineTuner(cfg).train()
    Path(out).write_text(json.dumps(record))
    return 0


def parse(value: str) -> tuple[str, list[str], dict[str, str]]:
    """``"jemalloc:data.packing=none@LD_PRELOAD=/x.so"`` -> name, overrides, environment."""
    head, _, env_part = value.partition("@")
    name, _, overrides = head.partition(":")
    env = dict(item.split("=", 1) for item in env_part.split(",") if item)
    return name, [o for o in overrides.split(",") if o], env


def summary(values: list[float], start: int = 20) -> dict[str, float]:
    """RSS at step ``start`` (the last step of a shorter run), at the end, the growth between them
    and the peak: ``summary([100, 110, 121], 2)`` -> start step 2, 110 -> 121 MiB, +10%, peak 121."""
    step = min(start, len(values))
    first = values[step - 1]
    return {"start_step": step, "at_start": first, "end": values[-1], "growth": values[-1] / first - 1,
            "peak": max(values)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(json.loads(argv[1]), int(argv[2]), argv[3])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=10, help="print RSS every N steps (default 10)")
    parser.add_argument("--variant", action="append", metavar="NAME[:KEY=VALUE,...][@ENV=VALUE,...]")
    parser.add_argument("--json", type=Path, help="also write every step's RSS to this file")
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="memory-growth-") as tmp:
        for value in args.variant or DEFAULT_VARIANTS:
            name, overrides, env = parse(value)
            out = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(overrides), str(args.steps),
                   str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
            if proc.returncode != 0 or not out.exists():
                raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
            results[name] = json.loads(out.read_text())
            s = summary(results[name])
            print(f"{name:<16} RSS step {s['start_step']} {s['at_start']:7.0f} MiB, step {args.steps} {s['end']:7.0f} MiB "
                  f"({s['growth']:+.1%}), peak {s['peak']:7.0f} MiB", flush=True)
    steps = range(args.every, args.steps + 1, args.every)
    print("\nRSS (MiB) after each step\nstep  " + "".join(f"{n:>16}" for n in results))
    for step in steps:
        print(f"{step:>4}  " + "".join(f"{v[step - 1]:>16.0f}" for v in results.values()))
    if args.json:
        args.json.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
