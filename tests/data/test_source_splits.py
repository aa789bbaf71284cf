"""data.split (and data.eval_split_name) pick the files of a split in folders and globs, by the
split names datasets reads from file and folder names; asking for a split that is not there fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.data.source_splits import split_of
from tunesmith.data.sources import load_rows
from tunesmith.errors import DataError


def write(path: Path, tag: str, n: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": f"{tag} {i}"}) + "\n" for i in range(n)))


def tags(rows) -> set[str]:
    return {row["text"].split()[0] for row, _ in rows}


@pytest.mark.parametrize("relative, split", [
    ("train.jsonl", "train"), ("my_test.jsonl", "test"), ("dev.jsonl", "validation"), ("val/p1.jsonl", "validation"),
    ("data/train-00000-of-00002.parquet", "train"), ("data/dpo-00001-of-00002.parquet", "dpo"),
    ("evaluation/x.jsonl", "test"), ("notes.jsonl", None), ("retrain.jsonl", None),
])
def test_split_names_in_paths(relative, split):
    assert split_of(Path(relative), "train") == split


def test_a_folder_gives_the_files_of_the_split_asked_for(tmp_path):
    write(tmp_path / "d" / "train.jsonl", "tr")
    write(tmp_path / "d" / "test.jsonl", "te")
    write(tmp_path / "d" / "valid" / "part-1.jsonl", "va")
    assert tags(load_rows(str(tmp_path / "d"), "train")) == {"tr"}
    assert tags(load_rows(str(tmp_path / "d"), "test")) == {"te"}
    assert tags(load_rows(str(tmp_path / "d"), "validation")) == {"va"}
    with pytest.raises(DataError, match=r"no file under .* is in the split 'tset'.*train, validation.*Did you mean 'test'"):
        load_rows(str(tmp_path / "d"), "tset")


def test_a_glob_gives_the_files_of_the_split(tmp_path):
    write(tmp_path / "g" / "a_train.jsonl", "tr")
    write(tmp_path / "g" / "a_test.jsonl", "te")
    assert tags(load_rows(str(tmp_path / "g" / "*.jsonl"), "test")) == {"te"}
    assert tags(load_rows(str(tmp_path / "g" / "*.jsonl"), "train")) == {"tr"}


def test_files_that_name_no_split_are_one_train_split(tmp_path):
    write(tmp_path / "f" / "a.jsonl", "a")
    write(tmp_path / "f" / "b.jsonl", "b")
    assert tags(load_rows(str(tmp_path / "f"), "train")) == {"a", "b"}
    with pytest.raises(DataError, match="'test' is asked for.*no file under .* names a split"):
        load_rows(str(tmp_path / "f"), "test")


def test_named_and_unnamed_files_mixed_are_refused(tmp_path):
    write(tmp_path / "m" / "train.jsonl", "tr")
    write(tmp_path / "m" / "extra.jsonl", "ex")
    with pytest.raises(DataError, match=r"some files name a split \(train\) and some do not \(extra.jsonl\)"):
        load_rows(str(tmp_path / "m"), "train")


def test_a_split_other_than_train_of_one_file_is_refused(tmp_path):
    write(tmp_path / "one.jsonl", "x")
    with pytest.raises(DataError, match="data.split: 'test' names a split, but data.train=.* is one file"):
        load_rows(str(tmp_path / "one.jsonl"), "test", key="data.train")
    assert tags(load_rows(str(tmp_path / "one.jsonl"), "train")) == {"x"}
