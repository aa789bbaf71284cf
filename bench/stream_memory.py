"""Resident memory of a streaming run (``data.streaming=true``) on a corpus of several GB: flat?

Writes (or reuses) a JSONL chat corpus of ``--size-gb`` GB, trains on it with streaming for
``--steps`` optimizer steps in a fresh process, records the resident set size (RSS) after every
step, and prints RSS at step 20 and at the last step, their ratio (the goal: within 10%), and how
much of the corpus the run read. The corpus is deleted afterwards unless ``--keep``.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/stream_memory.py                    # 3 GB, 200 steps
    HF_HUB_OFFLINE=1 .venv/bin/python bench/stream_memory.py --steps 40 --tiny   # a quick check

``--scan`` also reads the whole corpus once with the stream's reader (each line read and parsed
as JSON, nothing tokenized) and prints the RSS before and after: the reader's memory does not grow
with the part of the corpus read, which 200 training steps alone come nowhere near covering.

The model is the default job's (the packaged SmolLM2-135M with LoRA); ``--tiny`` trains a 2-layer
random Llama with the same tokenizer instead (the data path is the same, the steps are faster).
Extra ``key=value`` overrides go after the options. Linux only (``/proc``); RSS is the point, not
timings.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from memory_growth import run_child, step_parser  # bench/ is the script's own folder

WORDS = ("the model reads a stream of rows and trains on them while memory stays flat over many steps of "
         "a long run with packing shuffling tokenizing and checkpoints that keep the position in the corpus "
         "so a resumed run continues where it stopped").split()


def rss_mb() -> float:
    """This process's resident set size in MiB (Linux), from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_corpus(path: Path, size_bytes: int, seed: int = 0) -> None:
    """A JSONL file of chat rows (``messages``: user, assistant) of varied lengths, ``size_bytes`` long."""
    rng = random.Random(seed)
    templates = []
    for _ in range(997):  # distinct shapes, each row still unique by its number
        question = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
        answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 120)))
        row = {"messages": [{"role": "user", "content": f"Question @@: {question}?"},
                            {"role": "assistant", "content": f"Answer @@: {answer}."}]}
        templates.append(json.dumps(row))
    tmp = path.with_suffix(".partial")
    written, n = 0, 0
    with open(tmp, "w", encoding="utf-8", buffering=2**22) as out:
        while written < size_bytes:
            lines = [templates[(n + k) % len(templates)].replace("@@", str(n + k)) + "\n" for k in range(10000)]
            n += len(lines)
            chunk = "".join(lines)
            out.write(chunk)
            written += len(chunk.encode("utf-8"))
    tmp.rename(path)


def tiny_model(folder: Path) -> Path:
    """A 2-layer random Llama with the packaged tokenizer (as the tests build one)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tunesmith.models.loading import load_tokenizer, resolve_model_path

    tokenizer = load_tokenizer(str(resolve_model_path("smollm2-135m-instruct")))
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def scan(corpus: Path) -> dict[str, Any]:
    """Read every row of ``corpus`` with the stream's reader; RSS before, the highest seen, and after."""
    from tunesmith.data.stream_sources import FileRows

    reader = FileRows([corpus])
    before, highest, rows, began = rss_mb(), 0.0, 0, time.perf_counter()
    while True:
        got = reader.read(4096)
        if not got:
            break
        rows += len(got)
        if rows % (4096 * 64) < 4096:
            highest = max(highest, rss_mb())
    after = rss_mb()
    return {"rows": rows, "bytes": reader.bytes_read, "before": before, "highest": max(highest, after),
            "after": after, "seconds": time.perf_counter() - began}


def child(overrides: list[str], steps: int, out: str) -> int:
    """Train with the overrides for ``steps`` steps, writing RSS per step and the stream's progress to ``out``."""
    import tunesmith.training.guarded_run as guarded_run
    from transformers import TrainerCallback

    from tunesmith.api import FineTuner
    from tunesmith.config import load_config

    record: dict[str, Any] = {"rss": [], "seconds": []}
    start = time.perf_counter()

    class Rss(TrainerCallback):
        """Added last: reads memory after every other callback of the step."""

        def __init__(self, trainer: Any) -> None:
            self.trainer = trainer

        def on_step_end(self, args, state, control, **kwargs):
            record["rss"].append(round(rss_mb(), 1))
            record["seconds"].append(round(time.perf_counter() - start, 1))
            record["progress"] = self.trainer.train_dataset.progress()
            Path(out).with_suffix(".partial").write_text(json.dumps(record))  # to follow a long run

    train = guarded_run.train_with_guards

    def train_with_probe(trainer: Any, *args: Any, **kwargs: Any) -> Any:
        trainer.add_callback(Rss(trainer))
        return train(trainer, *args, **kwargs)

    guarded_run.train_with_guards = train_with_probe
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        cfg = load_config(overrides=[f"output_dir={tmp}/run", f"train.max_steps={steps}", *overrides])
        FineTuner(cfg).train()
    Path(out).write_text(json.dumps(record))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return run_child(child, argv)
    parser = step_parser(__doc__)
    parser.add_argument("--size-gb", type=float, default=3.0, help="corpus size in GB (default 3)")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="the corpus file (default: corpus-<size>GB.jsonl in the system temp folder); "
                             "reused when it exists with at least that size")
    parser.add_argument("--keep", action="store_true", help="keep the corpus afterwards (default: delete it)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer random Llama instead of SmolLM2-135M")
    parser.add_argument("--every", type=int, default=20, help="print RSS every N steps (default 20)")
    parser.add_argument("--json", type=Path, help="also write every step's RSS to this file")
    parser.add_argument("--scan", action="store_true", help="also read the whole corpus with the stream's reader")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    size = int(args.size_gb * 1e9)
    corpus = args.corpus or Path(tempfile.gettempdir()) / "tunesmith-stream-bench" / f"corpus-{args.size_gb:g}GB.jsonl"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    made = False
    if not corpus.is_file() or corpus.stat().st_size < size:
        began = time.perf_counter()
        write_corpus(corpus, size)
        made = True
        print(f"wrote {corpus} ({corpus.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - began:.0f} s",
              flush=True)
    else:
        print(f"reusing {corpus} ({corpus.stat().st_size / 1e9:.2f} GB)", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="stream-memory-") as tmp:
            overrides = [f"data.train={corpus}", "data.streaming=true", "data.format=messages",
                         "eval.before_after=off", *args.overrides]
            if args.tiny:
                overrides.insert(0, f"model.name_or_path={tiny_model(Path(tmp) / 'tiny')}")
            out = Path(tmp) / "record.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(overrides), str(args.steps),
                   str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if proc.returncode != 0 or not out.exists():
                raise SystemExit(f"training failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
            record = json.loads(out.read_text())
        if args.scan:
            read = scan(corpus)
            print(f"scan: read {read['rows']} rows, {read['bytes'] / 1e9:.2f} GB, in {read['seconds']:.0f} s; RSS "
                  f"{read['before']:.1f} MiB before, {read['highest']:.1f} MiB at most, {read['after']:.1f} MiB after",
                  flush=True)
    finally:
        if made and not args.keep:
            corpus.unlink(missing_ok=True)
    rss, steps = record["rss"], len(record["rss"])
    first = min(20, steps)
    print("\nstep  RSS (MiB)  seconds")
    for step in range(args.every, steps + 1, args.every):
        print(f"{step:>4}  {rss[step - 1]:>9.1f}  {record['seconds'][step - 1]:>7.1f}")
    read = record["progress"]
    ratio = rss[-1] / rss[first - 1]
    print(f"\nRSS at step {first}: {rss[first - 1]:.1f} MiB; at step {steps}: {rss[-1]:.1f} MiB; "
          f"ratio {ratio:.3f} ({ratio - 1:+.1%}; goal: within 10%); highest after any step {max(rss):.1f} MiB")
    print(f"corpus: {read['total_bytes'] / 1e9:.2f} GB; read {read['rows_read']} rows, "
          f"{read['bytes_read'] / 1e6:.1f} MB of the current pass ({read['bytes_read'] / read['total_bytes']:.2%}), "
          f"{read['passes']} full passes; {read['rows_out']} training rows made")
    if args.json:
        args.json.write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
