"""Packing and length grouping: fewer padded tokens per batch.

Ways to waste less compute on padding (``data.packing``):

- ``padding_free``: each batch's examples are concatenated into one row with ``position_ids``
  that restart at 0 for every example, so there is no padding at all and the batches (which
  examples, in which order) are exactly those of ``none``. Causal LMs only.
- ``auto`` (the default): the run picks (``tunesmith.api.choices.batching.resolve_packing``):
  ``padding_free`` for causal LMs of the architectures in `PADDING_FREE_MODEL_TYPES`, ``none`` for
  everything else.
- ``group_by_length``: batches are drawn from examples of similar length, so dynamic padding adds
  little; the order stays shuffled across batches.
- ``pack``: examples are bin-packed into blocks of at most ``data.max_length`` tokens. A block
  carries ``position_ids`` that restart at 0 for every example, which is how the model (and the
  ``packed`` collator) keep examples from attending to each other.

Pure Python: nothing here imports torch, so it is cheap to use from config checks and reports.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Any, Sequence

from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.config.vocabulary import Packing, Task
from tunesmith.errors import ConfigError, DataError

PACKINGS = tuple(p.value for p in Packing)  # the concrete values of data.packing


def check_packing(packing: str, task: str, one_example_per_row: bool = False) -> Packing:
    """``data.packing`` (a concrete value) after a check that ``task`` and the trainer allow it.
    ``one_example_per_row`` (trainers that score each example as a whole, like ``npo``) refuses
    ``padding_free`` and ``pack``.

    Example:
        ``check_packing("group_by_length", "causal_lm")`` -> ``Packing.GROUP_BY_LENGTH``;
        ``check_packing("pack", "seq2seq")`` raises ``ConfigError``.
    """
    if packing not in PACKINGS:
        raise ConfigError(f"data.packing: unknown value {packing!r}. Allowed: auto, {', '.join(PACKINGS)}")
    chosen = Packing(packing)
    if one_example_per_row and chosen.several_examples_per_row:
        raise ConfigError(f"data.packing: {packing!r} puts several examples in one row, but this trainer scores "
                          "each example on its own; use data.packing=auto, none or group_by_length")
    if chosen.several_examples_per_row and task != Task.CAUSAL_LM:
        raise ConfigError(f"data.packing: {packing!r} is for causal_lm models, not {task!r}; "
                          "use group_by_length instead")
    return chosen


# Example kinds whose rows are not one input_ids sequence (pairs, unpaired with a flag, prompts to
# answer), and the data.packing values they allow: blocks and length buckets of input_ids do not apply.
ROW_PER_EXAMPLE_KINDS = ("preference", "unpaired_preference", "prompt")
ROW_PER_EXAMPLE_PACKINGS = ("none", "padding_free")


def check_packing_for_kind(packing: str, kind: str) -> None:
    """Refuse a ``data.packing`` that the examples' kind cannot use (see ``ROW_PER_EXAMPLE_KINDS``).

    Example:
        ``check_packing_for_kind("pack", "preference")`` raises ``ConfigError``;
        ``check_packing_for_kind("padding_free", "preference")`` passes (the pair collator puts
        chosen and rejected sequences in one row).
    """
    if kind in ROW_PER_EXAMPLE_KINDS and packing not in ROW_PER_EXAMPLE_PACKINGS:
        raise ConfigError(f"data.packing: {packing!r} cannot be used with {kind.replace('_', ' ')} data (each "
                          "example is scored as a whole, chosen against rejected or on its own); allowed: "
                          f"{', '.join(ROW_PER_EXAMPLE_PACKINGS)}, auto")


@dataclass
class PackStats:
    """What packing did: how many blocks and how full they are."""

    examples: int = 0
    blocks: int = 0
    tokens: int = 0
    max_length: int = 0

    @property
    def fill_ratio(self) -> float:
        """Real tokens / block capacity: 1.0 means no padding at all."""
        capacity = self.blocks * self.max_length
        return self.tokens / capacity if capacity else 0.0

    def summary(self) -> str:
        """One line for the user: examples, tokens, blocks and how full they are."""
        return (
            f"packed {self.examples} examples ({self.tokens} tokens) into {self.blocks} blocks of "
            f"{self.max_length} tokens, {self.fill_ratio:.1%} full"
        )


def _check_max_length(max_length: int) -> None:
    if not isinstance(max_length, int) or max_length <= 0:
        raise ConfigError(f"data.max_length: must be a positive number of tokens, got {max_length!r}")


def pack_best_fit_decreasing(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Bin-pack example lengths into as few blocks of ``max_length`` tokens as it can.

    Longest first, each example goes into the fullest block that still has room (best fit
    decreasing; at most 11/9 × optimal + 1 blocks). Examples are never split, so one longer than
    ``max_length`` is an error: it should have been dropped or truncated when tokenizing.

    Example:
        ``pack_best_fit_decreasing([3, 7, 3, 7, 3, 7], 10)`` -> ``[[1, 0], [3, 2], [5, 4]]``
        (indices into ``lengths``; every block holds 7 + 3 = 10 tokens).
    """
    _check_max_length(max_length)
    for i, n in enumerate(lengths):
        if n <= 0 or n > max_length:
            raise DataError(
                f"example {i} has {n} tokens; packing needs 1..{max_length} (data.max_length). "
                f"Longer examples must be dropped or truncated before packing (data.truncation)"
            )
    # Stable sort: equal lengths keep their dataset order, so the packing is deterministic.
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    blocks: list[list[int]] = []
    # (room left, block index), kept sorted so the best fit is one bisect away: O(n log n).
    room: list[tuple[int, int]] = []
    for i in order:
        n = lengths[i]
        at = bisect.bisect_left(room, (n, -1))
        if at < len(room):
            left, b = room.pop(at)
            blocks[b].append(i)
            bisect.insort(room, (left - n, b))
        else:
            blocks.append([i])
            bisect.insort(room, (max_length - n, len(blocks) - 1))
    return blocks


def pack_examples(rows: Sequence[dict[str, Any]], max_length: int) -> tuple[list[dict[str, list[int]]], PackStats]:
    """Concatenate tokenized examples into blocks (best fit decreasing) with restarting positions.

    The first token of every example gets label -100: with unshifted labels the previous token
    would otherwise be trained to predict across the boundary (and nothing is lost, since an
    example's first token is never a target when the example runs alone).

    Example:
        ``pack_examples([{"input_ids": [5, 6], "labels": [5, 6]}, {"input_ids": [7, 8, 9],
        "labels": [-100, 8, 9]}], max_length=8)`` ->
        ``[{"input_ids": [7, 8, 9, 5, 6], "labels": [-100, 8, 9, -100, 6],
        "position_ids": [0, 1, 2, 0, 1], "seq_lengths": [3, 2]}]`` and stats with 1 block.
    """
    lengths = [len(r["input_ids"]) for r in rows]
    blocks = []
    for members in pack_best_fit_decreasing(lengths, max_length):
        block: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": [], "seq_lengths": []}
        for i in members:
            ids, labels = list(rows[i]["input_ids"]), list(rows[i]["labels"])
            if len(labels) != len(ids):
                raise DataError(f"example {i}: {len(ids)} input_ids but {len(labels)} labels (must be equal)")
            block["input_ids"] += ids
            block["labels"] += [IGNORE_INDEX] + labels[1:]
            block["position_ids"] += list(range(len(ids)))
            block["seq_lengths"].append(len(ids))
        blocks.append(block)
    stats = PackStats(examples=len(rows), blocks=len(blocks), tokens=sum(lengths), max_length=max_length)
    return blocks, stats


def group_by_length_order(
    lengths: Sequence[int], batch_size: int, seed: int, mega_batch_size: int = 50
) -> list[int]:
    """An epoch's index order whose consecutive batches hold examples of similar length.

    Shuffle (seeded), cut into mega-batches of ``mega_batch_size`` batches, sort each mega-batch
    longest first and cut it into batches, then shuffle the full batches. Batches pad little,
    yet which lengths come when is still random. The batch holding the longest example goes
    first, so an out-of-memory error shows at step 1 rather than hours in. A short last batch
    stays last, because a DataLoader cuts the order into batches of ``batch_size`` in sequence.

    Example:
        ``group_by_length_order([1, 9, 2, 8], batch_size=2, seed=0)`` -> ``[1, 3, 2, 0]``
        (batches ``[9, 8]`` and ``[2, 1]`` tokens long, longest batch first).
    """
    if batch_size <= 0 or mega_batch_size <= 0:
        raise ConfigError(f"batch_size and mega_batch_size must be positive, got {batch_size} and {mega_batch_size}")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * mega_batch_size
    full: list[list[int]] = []
    tail: list[int] = []
    for start in range(0, len(order), span):
        mega = sorted(order[start:start + span], key=lambda i: -lengths[i])
        for b in range(0, len(mega), batch_size):
            batch = mega[b:b + batch_size]
            if len(batch) == batch_size:
                full.append(batch)
            else:
                tail = batch  # only the last mega-batch can leave a short batch
    rng.shuffle(full)
    if full:
        longest = max(range(len(full)), key=lambda k: lengths[full[k][0]])
        full[0], full[longest] = full[longest], full[0]
    return [i for batch in full for i in batch] + tail


def padding_fraction(lengths: Sequence[int], batch_size: int, order: Sequence[int] | None = None) -> float:
    """Share of the token slots that are padding when batches are padded to their longest example.

    Example:
        ``padding_fraction([1, 3, 2, 2], batch_size=2)`` -> ``0.2``
        (batches ``[1, 3]`` and ``[2, 2]``: 2 pad slots out of 3 × 2 + 2 × 2 = 10).
    """
    order = range(len(lengths)) if order is None else order
    order = list(order)
    slots = real = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start:start + batch_size]]
        slots += max(batch) * len(batch)
        real += sum(batch)
    return 1.0 - real / slots if slots else 0.0


def block_padding_fraction(lengths: Sequence[int], blocks: Sequence[Sequence[int]], max_length: int) -> float:
    """Share of block capacity left empty after packing (1 − fill ratio).

    Example:
        ``block_padding_fraction([3, 7, 4], [[1, 0], [2]], max_length=10)`` -> ``0.3``
        (14 tokens in 2 blocks of 10).
    """
    capacity = len(blocks) * max_length
    used = sum(lengths[i] for block in blocks for i in block)
    return 1.0 - used / capacity if capacity else 0.0
