"""Tokenizing throughput of the data pipeline on this machine.

Generates N chat rows in the ``messages`` format (1-3 user/assistant turns, some with a system
message, word counts drawn from a seeded log-normal distribution so that examples range from
roughly 30 to 400 tokens), writes them to a JSONL file in a temporary folder, and runs
``tunesmith.data.pipeline.build_datasets`` twice against a fresh, empty tokenized-data cache:

- cold: the rows are read, parsed, tokenized and written to the cache;
- warm: the same config again, so the fingerprint matches and tokenizing is skipped.

Each run is split into its stages by timing the pipeline's own functions while it runs:
reading + parsing (``load_example_sets``), the cache key (stat the files, hash), tokenizing
(``tokenize_to_table`` on ``--num-proc`` processes), and writing or reading the cache. Wall time
moves with whatever else runs on the machine, so the load average is printed with each run, and
CPU time (this process and its workers) too, which hardly does.

    HF_HUB_OFFLINE=1 python bench/preprocess.py              # 100,000 rows
    HF_HUB_OFFLINE=1 python bench/preprocess.py --rows 5000 --seed 1
    HF_HUB_OFFLINE=1 python bench/preprocess.py --rows 100000 --num-proc 2   # data.num_proc=2
    HF_HUB_OFFLINE=1 python bench/preprocess.py --rows 20000 --tokenizer-alone  # and the tokenizer by itself
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

WORDS = (
    "the model data train token answer question value table river garden window system number "
    "people market energy signal pattern method result simple clear small large quick slow early "
    "late north south water light sound paper stone metal cloud forest city street house music "
    "story report change reason effect source course point order level field power balance "
    "measure compare explain describe consider include improve reduce follow create support "
    "because although however therefore often rarely usually between within across against "
    "during before after about around through under over every several another each"
).split()
SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in plain language.",
    "You answer questions about everyday topics clearly and briefly.",
)


# --- generating the rows ------------------------------------------------------------------------


def _sentence(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n_words)]
    words[0] = words[0].capitalize()
    text, out = [], []
    for i, word in enumerate(words):
        out.append(word)
        if len(out) >= rng.randint(6, 14) or i == len(words) - 1:
            text.append(" ".join(out) + rng.choice(".?." if i < len(words) - 1 else "."))
            out = []
    return " ".join(text)


def _words(rng: random.Random, median: float, low: int, high: int) -> int:
    """A log-normal word count clipped to [low, high]: mostly short, a long tail."""
    return max(low, min(high, int(round(rng.lognormvariate(math.log(median), 0.6)))))


def make_row(rng: random.Random) -> dict[str, Any]:
    """One ``messages`` row. The total word budget is drawn first, then split across the turns."""
    turns = rng.choices((1, 2, 3), weights=(0.6, 0.25, 0.15))[0]
    budget = _words(rng, 90, 12, 300)
    messages: list[dict[str, str]] = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    for _ in range(turns):
        share = max(8, budget // turns)
        user = max(3, int(share * rng.uniform(0.2, 0.5)))
        messages.append({"role": "user", "content": _sentence(rng, user)})
        messages.append({"role": "assistant", "content": _sentence(rng, max(3, share - user))})
    return {"messages": messages}


def write_rows(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for _ in range(n):
            f.write(json.dumps(make_row(rng)) + "\n")


# --- timing the pipeline's stages ---------------------------------------------------------------


class StageTimer:
    """Wraps named functions of ``tunesmith.data.pipeline`` (where ``build_datasets`` looks them
    up) so each call adds its wall time to a stage; restored on exit."""

    def __init__(self, module: Any, stages: dict[str, str]) -> None:
        self.module, self.stages = module, stages
        self.seconds: dict[str, float] = defaultdict(float)

    def _wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        return timed

    @contextmanager
    def active(self) -> Iterator["StageTimer"]:
        saved = {name: getattr(self.module, name) for name in self.stages}
        for name, stage in self.stages.items():
            setattr(self.module, name, self._wrap(stage, saved[name]))
        try:
            yield self
        finally:
            for name, fn in saved.items():
                setattr(self.module, name, fn)


STAGES = {
    "load_example_sets": "read + parse",
    "_stamps": "fingerprint (stat the files)",
    "data_key": "fingerprint (hash the key)",
    "tokenize_to_table": "tokenize",
    "table_to_dataset": "tokenize",
    "save_entry": "cache write",
    "load_entry": "cache lookup/read",
}


def run_once(label: str, cfg: Any, tokenizer: Any, seed: int) -> dict[str, Any]:
    from tunesmith.api.data_entry import concrete_data
    from tunesmith.data import pipeline

    gc.collect()  # garbage left by generating rows or by the previous run is not charged to this one
    timer = StageTimer(pipeline, STAGES)
    with timer.active():
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        bundle = pipeline.build_datasets(concrete_data(cfg.data, "causal_lm"), tokenizer, seed, "causal_lm")
        total, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    stages = dict(timer.seconds)
    stages["other"] = max(0.0, total - sum(stages.values()))
    stats = bundle.train_stats
    load = os.getloadavg()[0]
    lengths = sorted(len(ids) for ids in bundle.train["input_ids"])
    return {"label": label, "seconds": total, "stages": stages, "rows": len(bundle.train), "bundle": bundle,
            "kept": stats.kept, "dropped": stats.dropped, "tokens": stats.tokens,
            "trained_tokens": stats.trained_tokens, "longest": stats.longest,
            "notes": bundle.notes, "peak_rss_mib": _peak_rss_mib(), "load": load, "cpu": cpu,
            "lengths": (lengths[0], lengths[len(lengths) // 2], lengths[-1]) if lengths else (0, 0, 0)}


def check_against_growing_prefix(path: Path, bundle: Any, cfg: Any, tokenizer: Any, n: int) -> str:
    """Compare ``n`` evenly spaced rows with the growing-prefix method (two renderings per answer,
    one tokenizer call per segment): the way rows were made before one rendering per conversation."""
    from tunesmith.api.choices.data import resolve_template
    from tunesmith.data.examples import Conversation, Message

    template = resolve_template(tokenizer, cfg.data)
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != len(bundle.train):
        return f"cannot check: {len(lines)} rows written, {len(bundle.train)} kept"
    picked = sorted({round(i * (len(lines) - 1) / max(1, n - 1)) for i in range(n)})
    different = 0
    for i in picked:
        messages = [Message(m["role"], m["content"]) for m in json.loads(lines[i])["messages"]]
        ids, labels = [], []
        for text, trained in template.render_segments_by_prefix(Conversation(messages), cfg.data.loss_on):
            part = tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += part
            labels += part if trained else [-100] * len(part)
        row = bundle.train[i]
        different += (row["input_ids"], row["labels"]) != (ids, labels)
    return f"{len(picked) - different} of {len(picked)} rows checked are identical to the growing-prefix method"


def tokenizer_alone(path: Path, cfg: Any, tokenizer: Any) -> None:
    """The Rust tokenizer by itself on the same rows: batched ``encode_batch_fast`` of the texts the
    pipeline tokenizes (each conversation's segments), and of each whole rendering, with its own
    threads as the tokenizer sets them. What the pipeline adds is the rest of its time."""
    from tunesmith.api.choices.data import resolve_template
    from tunesmith.data.examples import Conversation, Message

    template = resolve_template(tokenizer, cfg.data)
    conversations = [Conversation([Message(m["role"], m["content"]) for m in json.loads(line)["messages"]])
                     for line in path.read_text(encoding="utf-8").splitlines()]
    segments = [text for group in template.segment_groups(conversations, cfg.data.loss_on)
                for segs in group for text, _ in segs]
    whole = [text for text in template.render_many([c.messages for c in conversations]) if text is not None]
    backend = tokenizer.backend_tokenizer
    print(f"\nthe Rust tokenizer alone on the same {len(conversations):,} rows (load average before: "
          f"{os.getloadavg()[0]:.2f}):")
    for name, texts in (("each segment (as the pipeline)", segments), ("each whole rendering", whole)):
        start, cpu_start, tokens = time.perf_counter(), _cpu_seconds(), 0
        for k in range(0, len(texts), 1024):
            tokens += sum(len(e.ids) for e in backend.encode_batch_fast(texts[k:k + 1024], add_special_tokens=False))
        wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
        print(f"  {name:<32} {wall:6.2f} s  {_rate(len(conversations), wall):>10} rows  "
              f"{_rate(tokens, wall):>12} tokens  {cpu:6.2f} CPU-s ({len(conversations) / max(cpu, 1e-9):,.0f} rows per CPU-s)")


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (tokenizing workers), user + system.
    Unlike wall time it hardly moves when other jobs share the CPUs."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _peak_rss_mib() -> float:
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def _rate(n: float, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s" if seconds > 0 else "n/a"


def report(result: dict[str, Any], n_rows: int) -> None:
    s = result["seconds"]
    print(f"\n{result['label']}: {s:.2f} s (1-minute load average after: {result['load']:.2f})")
    print(f"  rows       {n_rows:>12,}  {_rate(n_rows, s):>14}  ({result['kept']:,} kept, {result['dropped']:,} dropped)")
    print(f"  tokens     {result['tokens']:>12,}  {_rate(result['tokens'], s):>14}")
    print(f"  trained    {result['trained_tokens']:>12,}  {_rate(result['trained_tokens'], s):>14}")
    cpu = result["cpu"]
    print(f"  CPU time   {cpu:>12.2f} s  {_rate(n_rows, cpu):>14} rows per CPU-second (this process and its workers)")
    print("  time split:")
    for stage, sec in sorted(result["stages"].items(), key=lambda kv: -kv[1]):
        print(f"    {stage:<36} {sec:8.2f} s  {100 * sec / s:5.1f}%")
    tok = result["stages"].get("tokenize", 0.0)
    if tok > 0:
        print(f"  tokenizing alone: {_rate(n_rows, tok)} rows, {_rate(result['tokens'], tok)} tokens")
    print(f"  peak memory of the process so far: {result['peak_rss_mib']:,.0f} MiB")
    for note in result["notes"]:
        print(f"  note: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="chat rows to generate (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated rows and the pipeline")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="tokenizer to use")
    parser.add_argument("--max-length", type=int, default=1024, help="data.max_length (default 1024)")
    parser.add_argument("--num-proc", type=int, default=1, help="data.num_proc: tokenizing processes (default 1)")
    parser.add_argument("--template", default="auto", help="data.template (default auto: the model's own)")
    parser.add_argument("--tokenizer-alone", action="store_true",
                        help="then time the Rust tokenizer by itself on the same rows, for comparison")
    parser.add_argument("--check", type=int, default=2000,
                        help="rows compared with the growing-prefix method after the cold run (0: none)")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")

    from tunesmith.config import load_config
    from tunesmith.models.loading import load_tokenizer

    # Loaded first, under the user's own cache: a packaged model alias may be converted (once) into
    # TUNESMITH_CACHE, and that is no part of preprocessing.
    tokenizer = load_tokenizer(args.model)
    with tempfile.TemporaryDirectory(prefix="tunesmith-bench-") as tmp:
        tmp_path = Path(tmp)
        os.environ["TUNESMITH_CACHE"] = str(tmp_path / "cache")  # fresh and empty: the first run is cold
        data = tmp_path / "chat.jsonl"
        start = time.perf_counter()
        write_rows(data, args.rows, args.seed)
        gen = time.perf_counter() - start
        print(f"generated {args.rows:,} messages rows in {gen:.1f} s -> {data} "
              f"({data.stat().st_size / 2**20:.1f} MiB)")

        cfg = load_config(overrides=[f"data.train={data}", f"data.max_length={args.max_length}",
                                     "data.eval_split=0", "data.cache=true", f"data.num_proc={args.num_proc}",
                                     f"data.template={args.template}"])
        print(f"tokenizer {args.model} ({type(tokenizer).__name__}); data.max_length={cfg.data.max_length}, "
              f"data.template={cfg.data.template}, data.loss_on={cfg.data.loss_on}, data.num_proc={cfg.data.num_proc}")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
              f"TUNESMITH_CACHE={os.environ['TUNESMITH_CACHE']}")

        cold = run_once("cold (reads, tokenizes, writes the cache)", cfg, tokenizer, args.seed)
        report(cold, args.rows)
        if args.check:
            print(f"\nmasks: {check_against_growing_prefix(data, cold['bundle'], cfg, tokenizer, args.check)}")
        warm = run_once("warm (fingerprint matches: cache hit)", cfg, tokenizer, args.seed)
        report(warm, args.rows)

        if (warm["tokens"], warm["trained_tokens"], warm["rows"]) != (cold["tokens"], cold["trained_tokens"],
                                                                       cold["rows"]):
            print("\nwarning: the warm run's counts differ from the cold run's", file=sys.stderr)
        hit = any("tokenized-data cache" in n for n in warm["notes"])
        print(f"\nwarm/cold speed-up: {cold['seconds'] / warm['seconds']:.2f}x "
              f"({cold['seconds']:.2f} s -> {warm['seconds']:.2f} s; cache hit: {'yes' if hit else 'NO'})")
        shortest, median, longest = cold["lengths"]
        print(f"example length in tokens: mean {cold['tokens'] / max(1, cold['kept']):.0f}, "
              f"shortest {shortest}, median {median}, longest {longest}")
        if args.tokenizer_alone:
            tokenizer_alone(data, cfg, tokenizer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
