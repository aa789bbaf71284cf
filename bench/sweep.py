"""Train and score several settings of one job, one after another, and print a table.

Each setting is a list of ``key=value`` overrides added to a common base. A setting runs
``tunesmith train`` (with the before/after comparison off, so the base model is not scored again
for every setting) and then ``tunesmith eval`` on the run, which scores the held-out split with the
dataset's metric. Results go to ``--out`` as JSON lines, one per setting, so an interrupted sweep
keeps what it measured and ``--resume`` skips settings already there.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/sweep.py --out sweep.jsonl \\
        --setting "train.max_steps=150" --setting "train.max_steps=150 train.lr=5e-4"
    HF_HUB_OFFLINE=1 .venv/bin/python bench/sweep.py --base model=minilm-l6 data=paraphrase \\
        --setting "train.lr=1e-4" --setting "train.lr=5e-5 train.epochs=6" --out cls.jsonl

The base model's own score comes from ``--score-base`` (``tunesmith eval --base``). Wall-clock
columns are only comparable between settings that ran on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TUNESMITH = [sys.executable, "-m", "tunesmith"]


def run(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` with its output appended to ``log``; return its wall-clock seconds."""
    start = time.perf_counter()
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {shlex.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    if done.returncode != 0:
        raise SystemExit(f"command failed ({done.returncode}); see {log}: {shlex.join(cmd)}")
    return time.perf_counter() - start


def score(result_file: Path) -> tuple[str, float]:
    result = json.loads(result_file.read_text(encoding="utf-8"))
    metric = result["metric"]
    return metric, float(result["score"])


def one_setting(base: list[str], setting: list[str], workdir: Path, log: Path) -> dict:
    run_dir = workdir / f"run-{abs(hash(tuple(setting))) % 10**8}"
    train_s = run([*TUNESMITH, "train", *base, *setting, f"output_dir={run_dir}", "eval.before_after=off",
                   "overwrite=true"], log)
    result_file = workdir / "eval.json"
    eval_s = run([*TUNESMITH, "eval", str(run_dir), "--out", str(result_file)], log)
    metric, value = score(result_file)
    return {"setting": " ".join(setting), "metric": metric, "score": value,
            "train_s": round(train_s, 1), "eval_s": round(eval_s, 1), "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", nargs="*", default=[], help="overrides shared by every setting")
    parser.add_argument("--setting", action="append", required=True,
                        help="one setting: space-separated key=value overrides (repeatable)")
    parser.add_argument("--out", required=True, help="JSON lines file with one result per setting")
    parser.add_argument("--resume", action="store_true", help="skip settings already in --out")
    parser.add_argument("--score-base", metavar="MODEL", help="also score MODEL without fine-tuning")
    args = parser.parse_args(argv)

    out = Path(args.out)
    done = set()
    if args.resume and out.exists():
        done = {json.loads(line)["setting"] for line in out.read_text(encoding="utf-8").splitlines() if line}
    log = out.with_suffix(".log")
    rows = []
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        workdir = Path(tmp)
        if args.score_base:
            result_file = workdir / "base.json"
            eval_s = run([*TUNESMITH, "eval", *args.base, "--base", args.score_base, "--out", str(result_file)], log)
            metric, value = score(result_file)
            rows.append({"setting": f"base model {args.score_base}", "metric": metric, "score": value,
                         "train_s": 0.0, "eval_s": round(eval_s, 1), "load": os.getloadavg()[0]})
        for text in args.setting:
            setting = shlex.split(text)
            if " ".join(setting) in done:
                continue
            row = one_setting(args.base, setting, workdir, log)
            rows.append(row)
            with out.open("a", encoding="utf-8") as file:
                file.write(json.dumps(row) + "\n")
            print(f"{row['score']:.3f} {row['metric']}  train {row['train_s']:.0f} s  eval {row['eval_s']:.0f} s"
                  f"  load {row['load']:.1f}  {row['setting']}", flush=True)
    print("\n| setting | metric | score | train s | eval s |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {row['metric']} | {row['score']:.3f} | {row['train_s']:.0f} | {row['eval_s']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
