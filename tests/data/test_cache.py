"""The tokenized-data cache: a hit reads no data file and returns memory-mapped tables equal to
the first run's; any change to a file, the tokenizer or a setting that changes rows is a miss."""

from __future__ import annotations

import json
import os

import pytest

from tunesmith.config import load_config
from tunesmith.data import sources
from tunesmith.data.cache import fingerprint
from tunesmith.data.examples import Conversation, Message
from tunesmith.api.data_entry import build_datasets


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))


def write(path, n, answer="ok"):
    path.write_text("".join(json.dumps({"instruction": f"Say {i}", "output": f"{answer} {i}"}) + "\n"
                            for i in range(n)))
    return path


def hit(bundle) -> bool:
    return any("loaded from the tokenized-data cache" in n for n in bundle.notes)


def test_a_hit_reads_no_file_and_returns_the_same_bundle(smol_tokenizer, tmp_path, monkeypatch):
    data = write(tmp_path / "d.jsonl", 40)
    cfg = load_config(overrides=[f"data.train={data}", "data.eval_split=0.25"]).data
    first = build_datasets(cfg, smol_tokenizer, seed=0)

    def no_reading(*args, **kwargs):
        raise AssertionError("a cache hit read a data file")

    monkeypatch.setattr(sources, "read_file", no_reading)
    second = build_datasets(cfg, smol_tokenizer, seed=0)
    assert hit(second) and not hit(first)
    assert second.train.to_list() == first.train.to_list() and second.eval.to_list() == first.eval.to_list()
    assert (second.train_stats, second.eval_stats) == (first.train_stats, first.eval_stats)
    assert second.held_out == first.held_out and second.info == first.info
    assert second.train.cache_files and first.train.cache_files  # memory-mapped Arrow, not Python lists
    packed = build_datasets(load_config(overrides=[f"data.train={data}", "data.eval_split=0.25",
                                                   "data.packing=pack"]).data, smol_tokenizer, seed=0)
    assert hit(packed) and packed.pack_stats is not None  # packing is applied after the cache


def test_changed_files_settings_and_seeds_miss(smol_tokenizer, tmp_path):
    data = write(tmp_path / "d.jsonl", 10)
    cfg = load_config(overrides=[f"data.train={data}"]).data
    build_datasets(cfg, smol_tokenizer, seed=0)
    assert hit(build_datasets(cfg, smol_tokenizer, seed=0))
    assert not hit(build_datasets(cfg, smol_tokenizer, seed=1))
    assert not hit(build_datasets(load_config(overrides=[f"data.train={data}", "data.max_length=64"]).data,
                                  smol_tokenizer, seed=0))
    # num_proc does not change the rows: the same entry serves it
    assert hit(build_datasets(load_config(overrides=[f"data.train={data}", "data.num_proc=2"]).data,
                              smol_tokenizer, seed=0))
    stat = data.stat()
    write(data, 10, answer="no")  # same size, new content
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed = build_datasets(cfg, smol_tokenizer, seed=0)
    assert not hit(changed) and "no 0" in smol_tokenizer.decode(changed.train[0]["input_ids"])


def test_folder_sources_are_stamped_per_file(smol_tokenizer, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    write(folder / "a.jsonl", 5)
    cfg = load_config(overrides=[f"data.train={folder}"]).data
    assert len(build_datasets(cfg, smol_tokenizer, seed=0).train) == 5
    write(folder / "b.jsonl", 3)  # a new file in the folder
    again = build_datasets(cfg, smol_tokenizer, seed=0)
    assert not hit(again) and len(again.train) == 8


def test_content_keys_ignore_where_the_examples_came_from(smol_tokenizer):
    one = [Conversation([Message("user", "hi"), Message("assistant", "hello")], where="a.jsonl:1")]
    moved = [Conversation([Message("user", "hi"), Message("assistant", "hello")], where="b/a.jsonl:7")]
    edited = [Conversation([Message("user", "hi"), Message("assistant", "hey")], where="a.jsonl:1")]
    assert fingerprint(one, smol_tokenizer, {}) == fingerprint(moved, smol_tokenizer, {})
    assert fingerprint(one, smol_tokenizer, {}) != fingerprint(edited, smol_tokenizer, {})


def test_builtin_data_is_keyed_by_content(smol_tokenizer):
    cfg = load_config(overrides=["data.train=arith", "data.max_samples=20"]).data
    first = build_datasets(cfg, smol_tokenizer, seed=0)
    second = build_datasets(cfg, smol_tokenizer, seed=0)
    assert hit(second) and second.train.to_list() == first.train.to_list()


def test_held_out_examples_of_every_kind_survive_the_cache():
    from tunesmith.data.examples import (ClassificationExample, Seq2SeqExample, TextExample, TokenizedExample,
                                         example_from_dict, example_to_dict)

    examples = [Conversation([Message("user", "hi"), Message("assistant", "yo", train=False)], "yo", "a:1", {"k": 1}),
                TextExample("story", "t.txt:2"), ClassificationExample("good", 1, "fine", "c.csv:3", "pos"),
                Seq2SeqExample("long", "short", "s.jsonl:4"), TokenizedExample([1, 2], [-100, 2], "t.jsonl:5")]
    assert [example_from_dict(json.loads(json.dumps(example_to_dict(e)))) for e in examples] == examples


def test_user_row_transforms_key_the_cache_by_content(smol_tokenizer, tmp_path):
    from tunesmith.data.transforms import ROW_TRANSFORMS, register_row_transform

    data = write(tmp_path / "d.jsonl", 6)
    words = {"suffix": " please"}

    @register_row_transform("politely_for_cache_test")
    def politely(row, rng):
        return {**row, "instruction": row["instruction"] + words["suffix"]}

    try:
        cfg = load_config(overrides=[f"data.train={data}", "data.transforms=[politely_for_cache_test]"]).data
        first = build_datasets(cfg, smol_tokenizer, seed=0)
        assert hit(build_datasets(cfg, smol_tokenizer, seed=0))
        words["suffix"] = " now"  # the code changed, the file did not: a new key
        changed = build_datasets(cfg, smol_tokenizer, seed=0)
        assert not hit(changed) and changed.train.to_list() != first.train.to_list()
    finally:
        ROW_TRANSFORMS._items.pop("politely_for_cache_test", None)
        ROW_TRANSFORMS._given.pop("politely_for_cache_test", None)
