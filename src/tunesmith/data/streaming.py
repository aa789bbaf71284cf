"""Training rows made while training (``data.streaming=true``): a corpus larger than memory.

    rows      stream_sources.open_rows     (a few at a time, with a position)
    rows      transforms.apply_row_transforms   (one generator over the whole stream)
    examples  formats.prepare_parser + the bad-row policy   (format detected from the first rows)
    rows      tokenize.ExampleTokenizer    (the code and settings of the in-memory path)
    rows      data.shuffle_buffer          (optional: drawn at random from a buffer, seeded)
    rows      greedy packing               (data.packing=pack: the block layout of ``pack_examples``)

``TokenStream`` is a ``torch.utils.data.IterableDataset`` that never ends: when the corpus is
read to its end it starts again from the top (a new pass), so ``train.max_steps`` alone decides
how long a run is. Every ``rows_per_step`` rows (one optimizer step: batch size × accumulation)
it keeps a snapshot of where it is (the reader's position, the rows tokenized but not yet drawn,
the shuffle buffer, the block being packed, the generators and the counts); a checkpoint stores
the snapshot of its step (``state_at_step``), and ``resume_from`` starts a new stream there, so a
resumed run draws exactly the rows an unbroken one draws, without reading the corpus again.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
from collections import deque
from typing import Any, Iterator, Optional

import torch

from tunesmith.config.schema import DataConfig
from tunesmith.data.bad_rows import BadRow, BadRowPolicy, BadRowReport
from tunesmith.data.formats import FORMATS, FormatInfo, prepare_parser
from tunesmith.config.vocabulary import Task
from tunesmith.data.packing import check_packing_for_kind
from tunesmith.data.pipeline import DataBundle, _tokenize, add_system_prompt, read_eval
from tunesmith.data.stream_sources import open_rows
from tunesmith.data.tokenize import IGNORE_INDEX, ExampleTokenizer, TokenizeSettings, TokenizeStats
from tunesmith.data.transforms import apply_row_transforms
from tunesmith.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

CHUNK = 64  # raw rows read, parsed and tokenized together
PEEK = 100  # rows the format is detected from
KEPT_SNAPSHOTS = 8  # steps back a checkpoint may ask for (the loader reads at most a step or two ahead)
BAD_CHECK_AFTER = 1000  # rows read before data.max_bad_fraction is checked (then after every chunk)
STATE_VERSION = 1


@dataclasses.dataclass
class _Cursor:
    """Where a stream is: everything its next rows depend on."""

    reader: Any
    passes: int = 0
    rows_out: int = 0  # training rows handed out
    rows_read: int = 0  # raw rows read, over all passes
    kept_this_pass: int = 0
    pending: deque = dataclasses.field(default_factory=deque)  # tokenized, not yet drawn
    buffer: list = dataclasses.field(default_factory=list)  # data.shuffle_buffer
    block: Optional[dict[str, list[int]]] = None  # data.packing=pack: the block being filled
    shuffle_rng: random.Random = dataclasses.field(default_factory=random.Random)
    transform_rng: random.Random = dataclasses.field(default_factory=random.Random)
    stats: TokenizeStats = dataclasses.field(default_factory=TokenizeStats)
    bad: BadRowReport = dataclasses.field(default_factory=BadRowReport)


class TokenStream(torch.utils.data.IterableDataset):
    """Token rows of ``data.train`` made as they are drawn (see the module docstring).

    Example:
        ``build_stream(DataConfig(train="big.jsonl", streaming=True, packing="pack"), tokenizer)``
        yields blocks whose keys are ``input_ids``, ``labels``, ``position_ids`` and ``seq_lengths``.
    """

    def __init__(self, cfg: DataConfig, tokenizer: Any, task: str, seed: int, parse_row: Any, info: FormatInfo,
                 pack: bool, rows_per_step: int = 1) -> None:
        super().__init__()
        self.cfg, self.seed, self.parse_row, self.info, self.pack = cfg, seed, parse_row, info, pack
        self.rows_per_step = max(1, int(rows_per_step))
        self.tokenize = ExampleTokenizer(tokenizer, task, TokenizeSettings.from_config(cfg))
        self.policy = BadRowPolicy(cfg.on_bad_rows, cfg.max_bad_fraction, key="data.train")
        self._resume: Optional[dict[str, Any]] = None
        self._snapshots: dict[int, dict[str, Any]] = {}
        self._cursor: Optional[_Cursor] = None

    # -- position ---------------------------------------------------------------------------
    @property
    def resumed(self) -> bool:
        """Whether the next iteration starts at a checkpoint's position (``resume_from``)."""
        return self._resume is not None

    def resume_from(self, state: dict[str, Any]) -> None:
        """Start the next iteration at ``state`` (from ``state_at_step`` of the interrupted run)."""
        if state.get("version") != STATE_VERSION or int(state.get("rows_per_step", -1)) != self.rows_per_step:
            raise DataError(f"the checkpoint's stream position was saved for {state.get('rows_per_step')} rows per "
                            f"step (format {state.get('version')}); this run takes {self.rows_per_step} rows per "
                            f"step (format {STATE_VERSION}): resume with the batch size and accumulation it was saved with")
        self._resume = state

    def state_at_step(self, step: int) -> dict[str, Any]:
        """The stream's position after ``step`` optimizer steps, as plain JSON values."""
        c = self._cursor
        if step not in self._snapshots and c is not None and c.rows_out == step * self.rows_per_step:
            self._snapshot(c)  # nothing of the next step has been drawn yet
        snapshot = self._snapshots.get(step)
        if snapshot is None:
            raise DataError(f"the stream has no position for step {step} (it kept steps "
                            f"{sorted(self._snapshots)}); checkpoints are taken at optimizer-step boundaries")
        return {"version": STATE_VERSION, "step": step, "rows_per_step": self.rows_per_step, **snapshot}

    # -- what was read ----------------------------------------------------------------------
    @property
    def stats(self) -> TokenizeStats:
        """The tokenizing counts of the current (or last) iteration."""
        return self._cursor.stats if self._cursor else TokenizeStats()

    def progress(self) -> dict[str, Any]:
        """How far the current iteration has read: passes, raw rows, bytes of the files (when known)."""
        c = self._cursor
        if c is None:
            return {"passes": 0, "rows_read": 0, "rows_out": 0, "bytes_read": 0, "total_bytes": None}
        return {"passes": c.passes, "rows_read": c.rows_read, "rows_out": c.rows_out,
                "bytes_read": c.reader.bytes_read, "total_bytes": c.reader.total_bytes,
                "bad_rows": c.bad.n_bad}

    # -- iteration --------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, list[int]]]:
        cursor = self._start()
        self._cursor, self._snapshots = cursor, {}
        while True:
            if cursor.rows_out % self.rows_per_step == 0:
                self._snapshot(cursor)
            row = self._next_row(cursor)
            cursor.rows_out += 1
            # A copy: the snapshots still hold this row, and a collator may change what it is given.
            yield {k: list(v) if isinstance(v, list) else v for k, v in row.items()}

    def _start(self) -> _Cursor:
        state, self._resume = self._resume, None
        if state is None:
            return _Cursor(self._open(None), shuffle_rng=random.Random(self.seed),
                           transform_rng=random.Random(self.seed))
        cursor = _Cursor(self._open(copy.deepcopy(state["position"])), passes=state["passes"],
                         rows_out=state["rows_out"], rows_read=state["rows_read"],
                         kept_this_pass=state["kept_this_pass"], pending=deque(state["pending"]),
                         buffer=list(state["buffer"]), block=state["block"],
                         stats=TokenizeStats(**state["stats"]), bad=_report_from(state["bad"]))
        cursor.shuffle_rng.setstate(_rng_state(state["shuffle_rng"]))
        cursor.transform_rng.setstate(_rng_state(state["transform_rng"]))
        return cursor

    def _open(self, position: Optional[dict[str, Any]]) -> Any:
        cfg = self.cfg
        self._read_errors: Optional[list[BadRow]] = self.policy.collector()
        return open_rows(cfg.train, cfg.split, cfg.subset, "data.train", position, self._read_errors)

    def _snapshot(self, c: _Cursor) -> None:
        self._snapshots[c.rows_out // self.rows_per_step] = {
            "position": copy.deepcopy(c.reader.position), "passes": c.passes, "rows_out": c.rows_out,
            "rows_read": c.rows_read, "kept_this_pass": c.kept_this_pass, "pending": list(c.pending),
            "buffer": list(c.buffer),
            "block": {k: list(v) for k, v in c.block.items()} if c.block else None,
            "shuffle_rng": c.shuffle_rng.getstate(), "transform_rng": c.transform_rng.getstate(),
            "stats": dataclasses.asdict(c.stats), "bad": _report_record(c.bad)}
        for old in sorted(self._snapshots)[:-KEPT_SNAPSHOTS]:
            del self._snapshots[old]

    def _next_row(self, c: _Cursor) -> dict[str, list[int]]:
        if not self.pack:
            return self._next_example(c)
        limit = self.cfg.max_length
        while True:  # greedy: an example goes into the open block when it fits, else the block is done
            example = self._next_example(c)
            ids, labels = list(example["input_ids"]), list(example["labels"])
            if c.block is not None and len(c.block["input_ids"]) + len(ids) > limit:
                done, c.block = c.block, None
                _add_to_block(c, ids, labels)
                return done
            _add_to_block(c, ids, labels)

    def _next_example(self, c: _Cursor) -> dict[str, Any]:
        size = self.cfg.shuffle_buffer
        if not size:
            return self._next_tokenized(c)
        while len(c.buffer) < size:
            c.buffer.append(self._next_tokenized(c))
        at = c.shuffle_rng.randrange(len(c.buffer))
        chosen = c.buffer[at]
        c.buffer[at] = c.buffer[-1]
        c.buffer.pop()
        return chosen

    def _next_tokenized(self, c: _Cursor) -> dict[str, Any]:
        while not c.pending:
            self._read_chunk(c)
        return c.pending.popleft()

    def _read_chunk(self, c: _Cursor) -> None:
        rows = c.reader.read(CHUNK)
        self._count_read_errors(c)
        if not rows:
            self._end_pass(c)
            return
        c.rows_read += len(rows)
        rows = apply_row_transforms(rows, self.cfg.transforms, self.seed, rng=c.transform_rng)
        examples = []
        for row, where in rows:
            c.bad.total += 1
            try:
                examples.append(self.parse_row(row, where))
            except DataError as err:
                if self.policy.mode == "error":
                    raise
                c.bad.add(BadRow.from_error(err, where))
        if c.bad.total >= BAD_CHECK_AFTER:
            self.policy.check(c.bad)
        add_system_prompt(examples, self.cfg.system_prompt)
        tokenized = self.tokenize(examples, c.stats)
        c.kept_this_pass += len(tokenized)
        c.pending.extend(tokenized)

    def _count_read_errors(self, c: _Cursor) -> None:
        if self._read_errors:
            for bad in self._read_errors:
                c.bad.total += 1
                c.bad.add(bad)
            self._read_errors.clear()

    def _end_pass(self, c: _Cursor) -> None:
        """The corpus is read to its end: check it gave rows, then start it again from the top."""
        c.reader.close()
        self.policy.check(c.bad)
        if not c.kept_this_pass:
            s, cfg = c.stats, self.cfg
            raise DataError(f"data.train: none of the {c.rows_read} rows read can be trained: {s.dropped_too_long} "
                            f"are longer than data.max_length={cfg.max_length} tokens (data.truncation="
                            f"{cfg.truncation!r}), {s.dropped_too_short} are shorter than data.min_length="
                            f"{cfg.min_length}, {s.dropped_no_trained_token} have no trained token under "
                            f"data.loss_on={cfg.loss_on!r}, {c.bad.n_bad} are bad rows. First ones: "
                            f"{'; '.join(s.examples_dropped[:3])}")
        c.passes += 1
        c.kept_this_pass = 0
        logger.info("data.train: read to its end (pass %d, %d rows so far); starting again from the top",
                    c.passes, c.rows_read)
        c.reader = self._open(None)


def _add_to_block(c: _Cursor, ids: list[int], labels: list[int]) -> None:
    """Append an example to the open block, laid out as ``packing.pack_examples`` lays out a block."""
    if len(labels) != len(ids):
        raise DataError(f"an example has {len(ids)} input_ids but {len(labels)} labels (must be equal)")
    if c.block is None:
        c.block = {"input_ids": [], "labels": [], "position_ids": [], "seq_lengths": []}
    c.block["input_ids"] += ids
    c.block["labels"] += [IGNORE_INDEX] + labels[1:]
    c.block["position_ids"] += list(range(len(ids)))
    c.block["seq_lengths"].append(len(ids))


def _rng_state(saved: Any) -> tuple:
    """A ``random.Random.getstate()`` value back from JSON (lists where it had tuples)."""
    version, internal, gauss = saved
    return int(version), tuple(int(v) for v in internal), gauss


def _report_record(report: BadRowReport) -> dict[str, Any]:
    return {"total": report.total, "counts": dict(report.counts), "first": [dataclasses.asdict(b) for b in report.first]}


def _report_from(record: dict[str, Any]) -> BadRowReport:
    from collections import Counter

    return BadRowReport(int(record["total"]), Counter(record["counts"]), [BadRow(**b) for b in record["first"]])


def check_streaming_config(cfg: DataConfig) -> None:
    """Refuse the ``data.*`` settings a stream cannot honour, naming each key and what to do instead."""
    if not cfg.streaming:
        return
    refusals = [
        (cfg.eval_split > 0, "data.eval_split", cfg.eval_split, "a fraction of a stream of unknown length cannot be "
         "held out; give the held-out rows as a file in data.eval"),
        (bool(cfg.eval_split_name), "data.eval_split_name", cfg.eval_split_name, "a streaming run's held-out rows come "
         "from data.eval (a file or dataset read in full)"),
        (bool(cfg.mix), "data.mix", f"{len(cfg.mix)} sources", "a stream reads one corpus; join the files into one "
         "folder or glob for data.train"),
        (cfg.dedupe, "data.dedupe", cfg.dedupe, "finding duplicates needs every example at once; de-duplicate the "
         "corpus beforehand"),
        (cfg.max_samples is not None, "data.max_samples", cfg.max_samples, "a stream's length is train.max_steps"),
        (cfg.num_proc > 1, "data.num_proc", cfg.num_proc, "a stream tokenizes its rows in the training process as "
         "they are drawn; set data.num_proc=1"),
        (cfg.packing == "group_by_length", "data.packing", cfg.packing, "length buckets need every length before the "
         "first batch; use pack, padding_free or none"),
        (cfg.retain is not None, "data.retain", cfg.retain, "unlearning runs read their forget and retain sets in "
         "memory; set data.streaming=false"),
        (cfg.preprocessor != "chat_template", "data.preprocessor", cfg.preprocessor, "a stream tokenizes with the "
         "chat_template preprocessor only"),
    ]
    for refused, key, value, why in refusals:
        if refused:
            raise ConfigError(f"{key}: {value!r} cannot be used with data.streaming=true: {why}")


def build_stream(cfg: DataConfig, tokenizer: Any, seed: int = 42, task: str = "causal_lm",
                 rows_per_step: int = 1) -> TokenStream:
    """A ``TokenStream`` over ``data.train``; reads only its first rows now (to detect the format).

    ``rows_per_step`` (batch size × accumulation) is how often it keeps its position for a checkpoint.
    """
    check_streaming_config(cfg)
    policy = BadRowPolicy(cfg.on_bad_rows, cfg.max_bad_fraction, key="data.train")
    reader = open_rows(cfg.train, cfg.split, cfg.subset, "data.train", None, policy.collector())
    first = reader.read(PEEK)
    reader.close()
    if not first:
        raise DataError(f"data.train: {cfg.train} holds no rows", reason="empty file")
    first = apply_row_transforms(first, cfg.transforms, seed)
    if (FORMATS.get(cfg.format).uses_labels if cfg.format is not None  # None: detected from the columns
            else _labels_needed(first, cfg)):
        if not cfg.label_names:
            raise ConfigError("data.label_names: a stream cannot see every label before training starts; list the "
                              "label names (data.label_names=[neg,pos]) or set data.streaming=false")
    parse_row, info = prepare_parser(first, cfg.format, cfg.columns, cfg.label_names or None,
                                     strict=cfg.on_bad_rows == "error")
    info = dataclasses.replace(info, label_names=list(info.label_names or cfg.label_names))
    return TokenStream(cfg, tokenizer, task, seed, parse_row, info, pack=cfg.packing == "pack",
                       rows_per_step=rows_per_step)


def _labels_needed(rows: list[Any], cfg: DataConfig) -> bool:
    """Whether the format detected from ``rows`` maps label values to ids."""
    from tunesmith.data.formats import detect_format

    for row, where in rows:
        try:
            return FORMATS.get(detect_format(row, where, cfg.columns)).uses_labels
        except DataError:
            continue
    return False


def streamed_bundle(cfg: DataConfig, tokenizer: Any, seed: int, task: str, preprocessor: Any,
                    rows_per_step: int) -> DataBundle:
    """The bundle of a streaming run: a ``TokenStream`` over data.train and data.eval tokenized in full."""
    if preprocessor is not None:
        raise ConfigError("data.preprocessor: a custom preprocessor tokenizes a list of examples, which a stream "
                          "does not have; use the chat_template preprocessor or set data.streaming=false")
    if cfg.packing == "pack" and task != Task.CAUSAL_LM:
        raise ConfigError(f"data.packing: 'pack' is for causal_lm models, not {task}; use none")
    stream = build_stream(cfg, tokenizer, seed, task, rows_per_step)
    check_packing_for_kind(cfg.packing, stream.info.kind)
    notes: list[str] = []
    held_out = streaming_held_out(cfg, seed, tokenizer, notes)
    eval_ds, eval_stats = None, None
    if held_out:
        eval_ds, eval_stats = _tokenize(tokenizer, held_out, task, cfg, "Tokenizing eval")
        eval_ds = eval_ds if len(eval_ds) else None
    if cfg.cache:
        notes.append("data.cache: not used by a streaming run (its rows are tokenized as they are drawn, not stored)")
    order = f"a shuffle buffer of {cfg.shuffle_buffer} examples" if cfg.shuffle_buffer else "the file's order"
    notes.insert(0, f"data.streaming: data.train={cfg.train} is read, tokenized"
                    f"{' and packed' if cfg.packing == 'pack' else ''} while training, in {order}; it starts "
                    "again from the top when it ends")
    return DataBundle(stream, eval_ds, stream.stats, eval_stats, stream.info, list(stream.info.label_names or []),
                      notes, None, held_out, streamed=True)


def streaming_held_out(cfg: DataConfig, seed: int, tokenizer: Any, notes: list[str]) -> list[Any]:
    """The held-out examples of a streaming run: ``data.eval`` read in full (none without it)."""
    if not cfg.eval:
        notes.append("data.streaming: no held-out rows (data.eval is not set); training rows are never held out "
                     "of a stream")
        return []
    held_out = read_eval(cfg, seed, tokenizer, notes)
    notes.append(f"data.streaming: the held-out rows are data.eval={cfg.eval} ({len(held_out)} examples, read in full)")
    return held_out
