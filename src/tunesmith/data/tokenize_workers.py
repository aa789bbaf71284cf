"""Tokenizing on ``data.num_proc`` processes, straight into an Arrow table.

The examples are cut into contiguous shards, one per process (at most one process per example);
each process runs ``tokenize_examples`` on its shard and hands back an Arrow table and its
``TokenizeStats``. Tables are joined in shard order, so the rows and every count are those one
process gives, and the notes name the first dropped or cut examples in file order.

Where the platform can fork (Linux), worker processes inherit the tokenizer and the examples, so
nothing is copied to them; elsewhere (macOS, Windows) both are pickled once per process. An error
in any shard (a row the template refuses) stops the job with that error, file:line included.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
from dataclasses import fields
from typing import Any, Iterator, Optional

from tunesmith.data.token_columns import conversations_to_table, list_column
from tunesmith.data.tokenize import NOTED, TokenizeSettings, TokenizeStats, tokenize_examples


# Columns of text that may be null (a prompt row's ``reference``): typed as strings even when every
# value of a shard is None, so shards and cache entries always join.
_TEXT = ("reference",)


def rows_to_table(rows: list[dict[str, Any]]) -> Any:
    """Token rows -> a ``pyarrow.Table`` with the column types ``datasets.Dataset.from_list`` gives:
    ``[{"input_ids": [5, 6], "labels": [-100, 6]}]`` -> ``input_ids`` list<int32>, ``labels`` list<int64>."""
    import numpy as np
    import pyarrow as pa

    if not rows:
        return pa.table({})
    columns = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        if isinstance(values[0], list):
            # One flat array and its lengths: several times faster than converting nested lists.
            lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
            flat = np.fromiter(itertools.chain.from_iterable(values), dtype=np.int64, count=int(lengths.sum()))
            columns[name] = list_column(name, flat, lengths)
        elif name in _TEXT:
            columns[name] = pa.array(values, type=pa.string())
        else:
            columns[name] = pa.array(values)
    return pa.table(columns)


def table_to_dataset(table: Any) -> Any:
    """A ``datasets.Dataset`` over an Arrow table (no copy)."""
    import datasets

    return datasets.Dataset(datasets.table.InMemoryTable(table))


def merge_stats(parts: list[TokenizeStats]) -> TokenizeStats:
    """The counts of shards tokenized apart, as if tokenized together (notes kept in order)."""
    total = TokenizeStats()
    for part in parts:
        for f in fields(TokenizeStats):
            mine, theirs = getattr(total, f.name), getattr(part, f.name)
            if f.name == "longest":
                total.longest = max(mine, theirs)
            elif isinstance(mine, list):
                setattr(total, f.name, (mine + theirs)[:NOTED])
            else:
                setattr(total, f.name, mine + theirs)
    return total


def tokenize_to_table(tokenizer: Any, examples: list[Any], task: str, settings: TokenizeSettings,
                      num_proc: int = 1, desc: str = "Tokenizing") -> tuple[Any, TokenizeStats]:
    """``tokenize_examples`` on ``num_proc`` processes; returns (``pyarrow.Table``, stats)."""
    processes = max(1, min(num_proc, len(examples)))
    if processes == 1:
        return tokenize_table(tokenizer, examples, task, settings, desc)
    bounds = [len(examples) * k // processes for k in range(processes + 1)]
    shards = [(bounds[k], bounds[k + 1], k == 0) for k in range(processes)]
    context = _context()
    shared = (tokenizer, examples, task, settings, f"{desc} ({processes} processes; progress of the first)")
    with _quiet_tokenizer_fork(), context.Pool(processes, initializer=_init, initargs=shared) as pool:
        results = pool.map(_shard, shards, chunksize=1)
    import pyarrow as pa

    tables = [table for table, _ in results if table.num_columns]
    table = pa.concat_tables(tables) if tables else pa.table({})
    return table, merge_stats([stats for _, stats in results])


def tokenize_table(tokenizer: Any, examples: list[Any], task: str, settings: TokenizeSettings,
                   desc: str = "Tokenizing", progress: bool = True) -> tuple[Any, TokenizeStats]:
    """``tokenize_examples`` in this process, as a ``pyarrow.Table`` (``rows_to_table`` of its rows);
    conversations for a causal LM go straight into columns (``token_columns.py``), the same table."""
    made = conversations_to_table(tokenizer, examples, task, settings, desc, progress)
    if made is not None:
        return made
    rows, stats = tokenize_examples(tokenizer, examples, task, settings, desc, progress=progress)
    return rows_to_table(rows), stats


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


@contextlib.contextmanager
def _quiet_tokenizer_fork() -> Iterator[None]:
    """Each worker tokenizes on one thread (the processes are the parallelism). Setting
    TOKENIZERS_PARALLELISM while forking also stops the Rust tokenizer's warning about a fork
    after its thread pool was used; the user's own setting is left alone."""
    if "TOKENIZERS_PARALLELISM" in os.environ:
        yield
        return
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        os.environ.pop("TOKENIZERS_PARALLELISM", None)


_SHARED: Optional[tuple[Any, list[Any], str, TokenizeSettings, str]] = None


def _init(tokenizer: Any, examples: list[Any], task: str, settings: TokenizeSettings, desc: str) -> None:
    global _SHARED
    _SHARED = (tokenizer, examples, task, settings, desc)


def _shard(job: tuple[int, int, bool]) -> tuple[Any, TokenizeStats]:
    start, stop, progress = job
    if _SHARED is None:
        raise RuntimeError("a tokenizing worker ran before its initializer")
    tokenizer, examples, task, settings, desc = _SHARED
    return tokenize_table(tokenizer, examples[start:stop], task, settings, desc, progress)
