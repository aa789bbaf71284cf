"""Resident memory per training step: does a long run stay flat?

Runs tunesmith's default job (SmolLM2-135M, LoRA, the built-in ``arith`` data) for ``--steps``
optimizer steps in a fresh process per variant, records the resident set size (RSS) after every
step and the highest RSS within each step, and prints them every ``--every`` steps with a summary:
RSS at step 20, at the end, the growth between them, the peak within any step and the peak of the
whole process (loading included), and what ``train.memory_trim`` did (``train.cpu_kernel_cache``
is the other memory setting). Variants are config overrides
and/or environment variables, so allocator settings (``LD_PRELOAD``, ``MALLOC_*``) can be compared
with the batch layout:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/memory_growth.py --steps 200
    HF_HUB_OFFLINE=1 .venv/bin/python bench/memory_growth.py --steps 60 \\
        --variant padded:data.packing=none --variant untrimmed:train.memory_trim=off \\
        --variant cache1024:train.cpu_kernel_cache=1024 \\
        --variant jemalloc:train.memory_trim=off@LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2

A variant is ``NAME[:KEY=VALUE,...][@ENV=VALUE,...]``. Default: padding-free rows (the default)
and padded rows (``data.packing=none``), each with tunesmith's memory settings and untuned.
The before/after evaluation of the default job is off unless ``--eval``. Linux only (``/proc``).
Timings are not the point here; RSS is.
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

# Each layout with tunesmith's memory settings and with glibc's and torch's defaults (no trim,
# 1024 cached CPU kernels).
DEFAULT_VARIANTS = ["padding-free", "padding-free-untuned:train.memory_trim=off,train.cpu_kernel_cache=1024",
                    "padded:data.packing=none",
                    "padded-untuned:data.packing=none,train.memory_trim=off,train.cpu_kernel_cache=1024"]


def rss_mb() -> float:
    """This process's resident set size in MiB (Linux), from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb(reset: bool = False) -> float:
    """The highest RSS since the last reset, in MiB (VmHWM of /proc/self/status); ``reset=True``
    then lowers the mark to the current RSS (``/proc/self/clear_refs``), so each step gets its own."""
    peak = next(int(line.split()[1]) / 1024 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmHWM:"))
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    return peak


def child(overrides: list[str], steps: int, out: str) -> int:
    import tunesmith.training.guarded_run as guarded_run
    from transformers import TrainerCallback

    from tunesmith.api import FineTuner
    from tunesmith.config import load_config

    record: dict[str, Any] = {"rss": [], "step_peak": []}

    class Rss(TrainerCallback):
        """Added last, so it reads memory after every other callback (``train.memory_trim`` too)."""

        def on_train_begin(self, args, state, control, **kwargs):
            record["load_peak"] = round(peak_mb(reset=True), 1)  # loading, tokenizing, base-model eval
            record["at_start"] = round(rss_mb(), 1)

        def on_step_end(self, args, state, control, **kwargs):
            record["rss"].append(round(rss_mb(), 1))
            record["step_peak"].append(round(peak_mb(reset=True), 1))
            Path(out).with_suffix(".partial").write_text(json.dumps(record))  # to follow a long run

    train = guarded_run.train_with_guards

    def train_with_probe(trainer: Any, *args: Any, **kwargs: Any) -> Any:
        trainer.add_callback(Rss())
        return train(trainer, *args, **kwargs)

    guarded_run.train_with_guards = train_with_probe
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        cfg = load_config(overrides=[f"output_dir={tmp}/run", f"train.max_steps={steps}", *overrides])
        FineTuner(cfg).train()
        record["end_peak"] = round(peak_mb(), 1)  # saving (and evaluating, with --eval)
        run = json.loads((Path(tmp) / "run" / "run.json").read_text())
    record["memory"] = run.get("memory", {})
    Path(out).write_text(json.dumps(record))
    return 0


def parse(value: str) -> tuple[str, list[str], dict[str, str]]:
    """``"jemalloc:data.packing=none@LD_PRELOAD=/x.so"`` -> name, overrides, environment."""
    head, _, env_part = value.partition("@")
    name, _, overrides = head.partition(":")
    env = dict(item.split("=", 1) for item in env_part.split(",") if item)
    return name, [o for o in overrides.split(",") if o], env


def summary(record: dict[str, Any], start: int = 20) -> dict[str, Any]:
    """RSS after step ``start`` (the last step of a shorter run) and after the last step, the growth
    between them, and the peak: the highest RSS at any moment of the process (loading, any step,
    saving and evaluating), e.g. ``{"rss": [100, 110, 121], "step_peak": [130, 135, 140],
    "load_peak": 120, "end_peak": 125}`` with ``start=2`` -> 110 -> 121 MiB, +10%, peak 140."""
    values = record["rss"]
    step = min(start, len(values))
    first = values[step - 1]
    peaks = [record.get("load_peak", 0), record.get("end_peak", 0), *record.get("step_peak", []), *values]
    return {"start_step": step, "at_start": first, "end": values[-1], "growth": values[-1] / first - 1,
            "peak": max(peaks), "step_peak": max(record.get("step_peak", values))}


def run_child(child: Any, argv: list[str]) -> int:
    """The measured training run of a benchmark, in its own process: ``--child OVERRIDES STEPS OUT``."""
    return child(json.loads(argv[1]), int(argv[2]), argv[3])


def step_parser(doc: str) -> argparse.ArgumentParser:
    """The command line of a memory benchmark: its description and ``--steps`` (default 200)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return run_child(child, argv)
    parser = step_parser(__doc__)
    parser.add_argument("--every", type=int, default=10, help="print RSS every N steps (default 10)")
    parser.add_argument("--variant", action="append", metavar="NAME[:KEY=VALUE,...][@ENV=VALUE,...]")
    parser.add_argument("--eval", action="store_true",
                        help="keep the default job's before/after evaluation (off by default: it adds minutes)")
    parser.add_argument("--json", type=Path, help="also write every step's RSS to this file")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="memory-growth-") as tmp:
        for value in args.variant or DEFAULT_VARIANTS:
            name, overrides, env = parse(value)
            out = Path(tmp) / f"{name}.json"
            overrides = overrides if args.eval else ["eval.before_after=off", *overrides]
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(overrides), str(args.steps),
                   str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
            if proc.returncode != 0 or not out.exists():
                raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
            results[name] = json.loads(out.read_text())
            s = summary(results[name])
            trim = results[name].get("memory", {})
            print(f"{name:<24} RSS step {s['start_step']} {s['at_start']:6.0f} MiB, step {len(results[name]['rss'])} "
                  f"{s['end']:6.0f} MiB ({s['growth']:+.1%}); peak in a step {s['step_peak']:6.0f} MiB, "
                  f"peak {s['peak']:6.0f} MiB (loading {results[name]['load_peak']:.0f}); "
                  f"kernel cache {trim.get('cpu_kernel_cache', '?')}, trim: {trim.get('reason', '?')}"
                  + (f", {trim['trims']} calls, {trim['trim_seconds']:.2f} s" if "trims" in trim else ""), flush=True)
    print("\nRSS after each step / peak within the step (MiB)\nstep  " + "".join(f"{n:>26}" for n in results))
    for step in range(args.every, args.steps + 1, args.every):
        print(f"{step:>4}  " + "".join(f"{r['rss'][step - 1]:>18.0f} / {r['step_peak'][step - 1]:>5.0f}"
                                       for r in results.values()))
    if args.json:
        args.json.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
