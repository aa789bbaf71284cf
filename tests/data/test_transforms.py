"""Transforms: dedupe, sample, mix and registered row transforms are correct and seeded."""

import random
from collections import Counter

import pytest

from tunesmith.data.examples import Conversation, Message
from tunesmith.data.transforms import (
    ROW_TRANSFORMS,
    apply_row_transforms,
    check_row_transforms,
    content_key,
    dedupe,
    mix,
    mix_counts,
    register_row_transform,
    sample,
)
from tunesmith.errors import ConfigError, DataError


def test_dedupe_keeps_the_first_of_each_and_ignores_where():
    convs = [Conversation([Message("user", q), Message("assistant", "x")], where=f"f:{i}")
             for i, q in enumerate(["a", "b", "a", "c", "b"])]
    kept, removed = dedupe(convs)
    assert [c.where for c in kept] == ["f:0", "f:1", "f:3"] and removed == 2
    kept, removed = dedupe([3, 1, 3, 2, 1], key_fn=lambda x: x)
    assert kept == [3, 1, 2] and removed == 2
    assert content_key({"a": 1, "where": "f:1"}) == content_key({"where": "g:9", "a": 1})


def test_sample_is_a_seeded_shuffle_then_a_cap():
    items = list(range(50))
    assert sample(items, 10, seed=3) == sample(items, 10, seed=3)
    assert sample(items, 10, seed=3) != sample(items, 10, seed=4)
    assert sample(items, 10, seed=3) == sample(items, 20, seed=3)[:10]  # caps nest
    assert sorted(sample(items, None, seed=3)) == items and sample(items, 100, seed=0) == sample(items, None, 0)
    assert items == list(range(50))  # the input is not shuffled in place
    with pytest.raises(ConfigError, match="data.max_samples"):
        sample(items, -1, seed=0)


def test_mix_counts_follow_the_weights():
    assert mix_counts([100, 10], [3.0, 1.0], None) == [100, 33]
    assert mix_counts([5, 5, 5], [1.0, 1.0, 1.0], 10) == [4, 3, 3]  # largest remainder, ties by position
    assert mix_counts([5, 5], [1.0, 0.0], 7) == [7, 0]
    with pytest.raises(ConfigError, match="2 sources but 1 weights"):
        mix_counts([1, 2], [1.0], None)
    with pytest.raises(ConfigError, match="positive sum"):
        mix_counts([1, 2], [0.0, 0.0], 4)


def test_mix_without_replacement_while_items_last():
    a, b = [f"a{i}" for i in range(30)], [f"b{i}" for i in range(20)]
    mixed = mix([a, b], [3.0, 1.0], total=20, seed=7)
    counts = Counter(x[0] for x in mixed)
    assert counts == {"a": 15, "b": 5} and len(set(mixed)) == 20  # nothing repeated
    assert mixed == mix([a, b], [3.0, 1.0], total=20, seed=7)
    assert mixed != mix([a, b], [3.0, 1.0], total=20, seed=8)


def test_mix_repeats_a_small_source_evenly_and_warns():
    a, b = [f"a{i}" for i in range(12)], ["b0", "b1", "b2"]
    with pytest.warns(UserWarning, match="source 1 has 3 examples but its weight asks for 8; 5 are repeats"):
        mixed = mix([a, b], [3.0, 2.0], total=None, seed=0)
    counts = Counter(mixed)
    assert all(counts[x] == 1 for x in a)
    assert sorted(counts[x] for x in b) == [2, 3, 3]  # each item at most once more than any other


def test_mix_rejects_an_empty_source_with_weight():
    with pytest.raises(DataError, match="data.mix: extra.jsonl holds no examples"):
        mix([["a"] * 4, []], [1.0, 1.0], total=4, seed=0, names=["train", "extra.jsonl"])


def test_row_transforms_apply_in_order_and_keep_where():
    rows = [({"instruction": "  Hello World ", "output": " 4\n"}, "f:1"), ({"instruction": " ", "output": ""}, "f:2"),
            ({"messages": [{"role": "user", "content": " Hi "}]}, "f:3")]
    out = apply_row_transforms(rows, ["drop_empty", "strip_whitespace", "lowercase_text"], seed=0)
    assert out == [({"instruction": "hello world", "output": "4"}, "f:1"),
                   ({"messages": [{"role": "user", "content": "hi"}]}, "f:3")]
    assert rows[0][0]["instruction"] == "  Hello World "  # inputs are not changed


def test_registered_transform_can_expand_drop_and_use_the_seeded_rng():
    @register_row_transform("test_noisy_copies")
    def noisy_copies(row, rng):
        if row["text"] == "drop":
            return None
        return [row, {**row, "text": row["text"] + str(rng.randint(0, 10**6))}]

    try:
        rows = [({"text": "a"}, "f:1"), ({"text": "drop"}, "f:2"), ({"text": "b"}, "f:3")]
        first = apply_row_transforms(rows, ["test_noisy_copies"], seed=1)
        assert [w for _, w in first] == ["f:1", "f:1", "f:3", "f:3"]
        assert first == apply_row_transforms(rows, ["test_noisy_copies"], seed=1)
        assert first != apply_row_transforms(rows, ["test_noisy_copies"], seed=2)
        rng = random.Random(1)
        assert first[1][0]["text"] == "a" + str(rng.randint(0, 10**6))
    finally:
        ROW_TRANSFORMS._items.pop("test_noisy_copies")


def test_unknown_transform_fails_with_did_you_mean_and_bad_results_are_named():
    with pytest.raises(ConfigError, match="data.transforms: unknown row transform 'strip_whitespaces'. "
                                          "Did you mean 'strip_whitespace'?"):
        check_row_transforms(["strip_whitespaces"])

    @register_row_transform("test_returns_text")
    def returns_text(row, rng):
        return "oops"

    try:
        with pytest.raises(ConfigError, match="'test_returns_text' returned str for the row at f:4"):
            apply_row_transforms([({"text": "x"}, "f:4")], ["test_returns_text"], seed=0)
    finally:
        ROW_TRANSFORMS._items.pop("test_returns_text")
