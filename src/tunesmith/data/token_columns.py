"""Causal-LM conversations tokenized straight into flat token columns, then one Arrow table.

``tokenize_examples`` builds a Python list of ids and one of labels per example, and
``rows_to_table`` turns them back into flat arrays. For a data set of conversations (the common
case, and the one that is large) this module skips the lists: the segments of a batch of
conversations are tokenized in one call, their ids laid end to end in one numpy array, the labels
made from it with one mask (-100 where a segment is not trained), and each example is a slice of
those arrays. The rows, the column types and every count are exactly those of
``tokenize_examples`` + ``rows_to_table``: an example that does not fit ``data.max_length``, or
would be dropped, goes through the same ``_fit_causal`` as there, in the same order.
"""

from __future__ import annotations

import itertools
from typing import Any, Optional

from tunesmith.data.examples import Conversation
from tunesmith.data.truncation import IGNORE_INDEX

# The narrower integer types datasets gives these columns (``OptimizedTypedSequence``), when the values fit.
NARROW = {"input_ids": "int32", "attention_mask": "int8", "special_tokens_mask": "int8", "token_type_ids": "int8",
          "chosen_input_ids": "int32", "rejected_input_ids": "int32", "prompt_ids": "int32"}


def list_column(name: str, flat: Any, lengths: Any) -> Any:
    """A ``pyarrow`` list column from one flat int64 array and the length of each row, typed as
    ``datasets.Dataset.from_list`` types it: ``("input_ids", [5, 6, 7], [2, 1])`` -> ``[[5, 6], [7]]``
    as list<int32> (``NARROW`` names the columns that are narrowed when their values fit)."""
    import numpy as np
    import pyarrow as pa

    total = int(lengths.sum()) if len(lengths) else 0
    if total >= 2**31:  # past int32 offsets: pyarrow picks the layout (and chunks) itself
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        return pa.array([flat[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    small = NARROW.get(name)
    if small is not None and total and np.iinfo(small).min <= flat.min() and flat.max() <= np.iinfo(small).max:
        flat = flat.astype(small)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))


class ConversationColumns:
    """Collects the kept examples of a tokenizing job as flat ``input_ids`` / ``labels`` arrays.

    ``add_batch(job, conversations, stats)`` tokenizes one batch (``job`` is the ``_Job`` of
    ``tokenize.py``); ``table()`` gives the Arrow table of everything kept, in order.
    """

    def __init__(self) -> None:
        self.ids: list[Any] = []  # numpy pieces, in order
        self.labels: list[Any] = []
        self.lengths: list[int] = []

    def add_batch(self, job: Any, conversations: list[Conversation], stats: Any) -> None:
        """Tokenize ``conversations`` and keep what ``data.max_length`` / ``data.min_length`` allow,
        counting each example in ``stats`` as ``tokenize_examples`` does."""
        import numpy as np

        groups, encoded = job.segment_ids(conversations)
        seg_lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        flat = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int64, count=int(seg_lengths.sum()))
        trained = np.fromiter((t for group in groups for segs in group for _, t in segs), dtype=bool,
                              count=len(encoded))
        labels = np.where(np.repeat(trained, seg_lengths), flat, IGNORE_INDEX)
        # Token offsets of each example (one per segment list: several per conversation under
        # data.rerendered_history=per_turn, none when it trains no answer there).
        token_ends = np.concatenate([[0], np.cumsum(seg_lengths)])
        trained_ends = np.concatenate([[0], np.cumsum(seg_lengths * trained)])
        seg_bounds = np.concatenate([[0], np.cumsum([len(segs) for group in groups for segs in group],
                                                    dtype=np.int64)])
        starts, ends = token_ends[seg_bounds[:-1]].tolist(), token_ends[seg_bounds[1:]].tolist()
        n_trained = (trained_ends[seg_bounds[1:]] - trained_ends[seg_bounds[:-1]]).tolist()
        s = job.settings
        example = 0
        for conversation, group in zip(conversations, groups):
            if not group:  # per_turn, and no answer is trained: dropped and counted as tokenize_examples does
                job._fit_causal([], [], conversation.where, stats, 0)
            for _ in group:
                a, b, n = starts[example], ends[example], n_trained[example]
                example += 1
                if n and s.min_length <= b - a <= s.max_length:
                    stats.keep(b - a, n)
                    self._append(flat[a:b], labels[a:b])
                    continue
                row = job._fit_causal(flat[a:b].tolist(), labels[a:b].tolist(), conversation.where, stats, n)
                if row is not None:
                    self._append(np.asarray(row["input_ids"], dtype=np.int64),
                                 np.asarray(row["labels"], dtype=np.int64))

    def _append(self, ids: Any, labels: Any) -> None:
        self.ids.append(ids)
        self.labels.append(labels)
        self.lengths.append(len(ids))

    def table(self) -> Any:
        """The kept examples as a ``pyarrow.Table`` (``input_ids`` list<int32>, ``labels`` list<int64>);
        a table with no columns when none was kept, as ``rows_to_table([])`` gives."""
        import numpy as np
        import pyarrow as pa

        if not self.lengths:
            return pa.table({})
        lengths = np.asarray(self.lengths, dtype=np.int64)
        return pa.table({"input_ids": list_column("input_ids", np.concatenate(self.ids), lengths),
                         "labels": list_column("labels", np.concatenate(self.labels), lengths)})


def conversations_to_table(tokenizer: Any, examples: list[Any], task: str, settings: Any, desc: str = "Tokenizing",
                           progress: bool = True) -> Optional[tuple[Any, Any]]:
    """``(rows_to_table(rows), stats)`` for ``rows, stats = tokenize_examples(...)`` when every
    example is a ``Conversation`` and ``task`` trains a causal LM, made without the rows; None
    for any other data (``tokenize_examples`` then does the work)."""
    from tqdm.auto import tqdm

    from tunesmith.config.logs import show_progress
    from tunesmith.config.vocabulary import Task
    from tunesmith.data.tokenize import BATCH, TokenizeSettings, TokenizeStats, _Job, _task_for

    if not examples or _task_for(examples[0], task) != Task.CAUSAL_LM:
        return None
    if not all(type(example) is Conversation for example in examples):
        return None
    if not isinstance(settings, TokenizeSettings):
        settings = TokenizeSettings() if settings is None else TokenizeSettings.from_config(settings)
    stats = TokenizeStats()
    job = _Job(tokenizer, settings, "causal_lm", None)
    columns = ConversationColumns()
    with tqdm(total=len(examples), desc=desc, unit="ex", leave=False, mininterval=0.5,
              disable=not (progress and show_progress())) as bar:
        for start in range(0, len(examples), BATCH):
            chunk = examples[start:start + BATCH]
            columns.add_batch(job, chunk, stats)
            bar.update(len(chunk))
    return columns.table(), stats
