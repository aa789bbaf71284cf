"""Packing and length grouping: every example placed once, blocks within bounds, less padding."""

import random

import pytest

from tunesmith.data.packing import (
    PackStats,
    block_padding_fraction,
    group_by_length_order,
    pack_best_fit_decreasing,
    pack_examples,
    padding_fraction,
)
from tunesmith.errors import ConfigError, DataError


def first_fit(lengths, max_length):
    """The naive packer BFD should beat: each example in dataset order into the first block with room."""
    blocks, used = [], []
    for i, n in enumerate(lengths):
        for b, u in enumerate(used):
            if u + n <= max_length:
                blocks[b].append(i)
                used[b] += n
                break
        else:
            blocks.append([i])
            used.append(n)
    return blocks


def check_packing(lengths, blocks, max_length):
    assert sorted(i for b in blocks for i in b) == list(range(len(lengths)))  # every index exactly once
    assert all(sum(lengths[i] for i in b) <= max_length for b in blocks)
    assert all(b for b in blocks)


def test_bfd_golden():
    assert pack_best_fit_decreasing([3, 7, 3, 7, 3, 7], 10) == [[1, 0], [3, 2], [5, 4]]
    assert pack_best_fit_decreasing([], 10) == []


def test_bfd_fills_better_than_first_fit_on_short_examples_first():
    lengths = [3, 3, 3, 7, 7, 7]  # first fit puts the 3s together and leaves each 7 alone
    bfd, ff = pack_best_fit_decreasing(lengths, 10), first_fit(lengths, 10)
    check_packing(lengths, bfd, 10)
    assert len(bfd) == 3 and len(ff) == 4
    assert block_padding_fraction(lengths, bfd, 10) == 0.0
    assert block_padding_fraction(lengths, ff, 10) == pytest.approx(0.25)


@pytest.mark.parametrize("seed", range(5))
def test_bfd_is_valid_and_near_the_lower_bound_on_random_lengths(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 512) for _ in range(400)]
    blocks = pack_best_fit_decreasing(lengths, 512)
    check_packing(lengths, blocks, 512)
    lower_bound = -(-sum(lengths) // 512)
    assert len(blocks) <= 11 / 9 * lower_bound + 1
    assert len(blocks) <= len(first_fit(lengths, 512))
    assert blocks == pack_best_fit_decreasing(lengths, 512)  # deterministic


def test_bfd_rejects_examples_that_cannot_fit():
    with pytest.raises(DataError, match="example 1 has 11 tokens.*data.max_length"):
        pack_best_fit_decreasing([3, 11], 10)
    with pytest.raises(DataError, match="example 0 has 0 tokens"):
        pack_best_fit_decreasing([0], 10)
    with pytest.raises(ConfigError, match="data.max_length"):
        pack_best_fit_decreasing([1], 0)


def test_pack_examples_golden():
    rows = [{"input_ids": [5, 6], "labels": [5, 6]}, {"input_ids": [7, 8, 9], "labels": [-100, 8, 9]},
            {"input_ids": [1, 2, 3, 4], "labels": [1, 2, 3, 4]}]
    blocks, stats = pack_examples(rows, max_length=6)
    assert blocks == [
        {"input_ids": [1, 2, 3, 4, 5, 6], "labels": [-100, 2, 3, 4, -100, 6],
         "position_ids": [0, 1, 2, 3, 0, 1], "seq_lengths": [4, 2]},
        {"input_ids": [7, 8, 9], "labels": [-100, 8, 9], "position_ids": [0, 1, 2], "seq_lengths": [3]},
    ]
    assert stats == PackStats(examples=3, blocks=2, tokens=9, max_length=6)
    assert stats.fill_ratio == 0.75
    assert "into 2 blocks of 6 tokens, 75.0% full" in stats.summary()


def test_pack_examples_checks_label_length():
    with pytest.raises(DataError, match="2 input_ids but 1 labels"):
        pack_examples([{"input_ids": [1, 2], "labels": [1]}], max_length=4)


def test_padding_fraction_golden():
    assert padding_fraction([1, 3, 2, 2], batch_size=2) == pytest.approx(0.2)
    assert padding_fraction([1, 3, 1, 3], batch_size=2) == pytest.approx(1 / 3)
    assert padding_fraction([1, 3, 1, 3], batch_size=2, order=[1, 3, 0, 2]) == 0.0
    assert padding_fraction([], batch_size=2) == 0.0
    assert block_padding_fraction([3, 7, 4], [[1, 0], [2]], max_length=10) == pytest.approx(0.3)


def lengths_of(n=1000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(1, 500) for _ in range(n)]


def test_group_by_length_is_a_deterministic_permutation():
    lengths = lengths_of(1003)
    order = group_by_length_order(lengths, batch_size=8, seed=1)
    assert sorted(order) == list(range(1003))
    assert order == group_by_length_order(lengths, batch_size=8, seed=1)
    assert order != group_by_length_order(lengths, batch_size=8, seed=2)
    assert group_by_length_order([1, 9, 2, 8], batch_size=2, seed=0) == [1, 3, 2, 0]


def test_group_by_length_pads_far_less_than_random_order():
    lengths = lengths_of()
    shuffled = list(range(len(lengths)))
    random.Random(0).shuffle(shuffled)
    grouped = group_by_length_order(lengths, batch_size=8, seed=0)
    assert padding_fraction(lengths, 8, grouped) < 0.1 < 0.4 < padding_fraction(lengths, 8, shuffled)


def test_group_by_length_keeps_batches_shuffled_longest_first_and_short_batch_last():
    lengths = lengths_of(1003)
    order = group_by_length_order(lengths, batch_size=8, seed=0, mega_batch_size=10)
    batches = [order[i:i + 8] for i in range(0, len(order), 8)]
    assert max(lengths[i] for i in batches[0]) == max(lengths)
    assert len(batches[-1]) == 1003 % 8  # a DataLoader cuts batches in sequence: the short one must be last
    longest = [max(lengths[i] for i in b) for b in batches[:-1]]
    assert longest != sorted(longest, reverse=True)  # not one long descending sweep
    with pytest.raises(ConfigError):
        group_by_length_order(lengths, batch_size=0, seed=0)
