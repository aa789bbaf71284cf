"""The data pipeline as the trainer sees it: config in, tokenized datasets and notes out."""

import json

import pytest

from tunesmith.config import load_config
from tunesmith.api.data_entry import build_datasets, load_example_sets
from tunesmith.errors import DataError


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_classification_builtin_keeps_label_names(isolated_cache):
    from tunesmith.models.loading import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    cfg = load_config(overrides=["data=sentiment", "model=minilm-l6"])
    bundle = build_datasets(cfg.data, tok, seed=0, task="sequence_classification")
    assert bundle.label_names == ["negative", "positive"]
    row = bundle.train[0]
    assert isinstance(row["labels"], int) and row["input_ids"][0] == tok.cls_token_id
    assert bundle.eval is not None and len(bundle.eval) == 400


def test_second_build_is_served_from_the_cache(isolated_cache, smol_tokenizer, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"instruction": f"Say {i}", "output": str(i)} for i in range(20)])
    cfg = load_config(overrides=[f"data.train={data}"]).data
    first = build_datasets(cfg, smol_tokenizer, seed=0)
    second = build_datasets(cfg, smol_tokenizer, seed=0)
    assert not any("cache" in n for n in first.notes)
    assert any("loaded from the tokenized-data cache" in n for n in second.notes)
    assert first.train.to_list() == second.train.to_list()
    assert first.train_stats == second.train_stats
    changed = build_datasets(load_config(overrides=[f"data.train={data}", "data.loss_on=all"]).data,
                             smol_tokenizer, seed=0)
    assert not any("cache" in n for n in changed.notes)  # a setting that changes labels is a new key


def test_bad_rows_skip_counts_and_threshold(isolated_cache, smol_tokenizer, tmp_path):
    rows = [{"instruction": f"Say {i}", "output": str(i)} for i in range(18)]
    rows += ['{"instruction": broken', {"instruction": "no output"}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match=f"{data}:19"):
        build_datasets(load_config(overrides=[f"data.train={data}"]).data, smol_tokenizer, seed=0)
    ok = build_datasets(load_config(overrides=[f"data.train={data}", "data.on_bad_rows=skip",
                                               "data.max_bad_fraction=0.2"]).data, smol_tokenizer, seed=0)
    assert len(ok.train) == 18
    assert any("skipped 2 of 20" in n for n in ok.notes)
    with pytest.raises(DataError, match="2 of 20"):
        build_datasets(load_config(overrides=[f"data.train={data}", "data.on_bad_rows=skip",
                                              "data.max_bad_fraction=0.05"]).data, smol_tokenizer, seed=0)


def test_mix_dedupe_and_max_samples(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"instruction": f"A{i}", "output": "a"} for i in range(10)] * 2)
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": f"B{i}", "completion": "b"} for i in range(10)])
    cfg = load_config(overrides=[f"data.train={a}", "data.dedupe=true",
                                 f"data.mix=[{{train: {b}, weight: 0.5}}]"]).data
    train, held_out, notes = load_example_sets(cfg, seed=0)
    questions = [ex.messages[0].content for ex in train.examples]
    assert len(questions) == 15 and sum(q.startswith("B") for q in questions) == 5
    assert any("removed 10 duplicate" in n for n in notes)
    capped, _, _ = load_example_sets(load_config(overrides=[f"data.train={a}", "data.max_samples=4"]).data, seed=0)
    assert len(capped.examples) == 4


def test_packing_builds_blocks_with_restarting_positions(isolated_cache, smol_tokenizer):
    cfg = load_config(overrides=["data.packing=pack", "data.max_length=256"]).data
    bundle = build_datasets(cfg, smol_tokenizer, seed=0)
    block = bundle.train[0]
    assert len(block["input_ids"]) <= 256 and block["position_ids"].count(0) >= 2
    assert bundle.pack_stats.fill_ratio > 0.8  # 70-100-token examples in 256-token blocks
    assert any("data.packing" in n for n in bundle.notes)


def test_packing_is_refused_for_classification(isolated_cache):
    from tunesmith.models.loading import load_tokenizer

    cfg = load_config(overrides=["data=sentiment", "data.packing=pack"]).data
    with pytest.raises(DataError, match="data.packing"):
        build_datasets(cfg, load_tokenizer("minilm-l6"), seed=0, task="sequence_classification")


def test_build_datasets_accepts_a_plain_dict(isolated_cache, smol_tokenizer, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"instruction": f"Say {i}", "output": str(i)} for i in range(5)])
    bundle = build_datasets({"train": str(data), "max_length": 128}, smol_tokenizer)
    assert len(bundle.train) == 5
    from tunesmith.errors import ConfigError

    with pytest.raises(ConfigError, match="data.max_lenght"):
        build_datasets({"train": str(data), "max_lenght": 128}, smol_tokenizer)


def test_csv_numeric_labels_are_ids(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood,1\nbad,0\nfine,2\nten,10\n")
    cfg = load_config(overrides=[f"data.train={path}"]).data
    train, _, _ = load_example_sets(cfg, seed=0)
    assert [e.label for e in train.examples] == [1, 0, 2, 10]


def test_builtin_test_split_says_how_it_was_made(tmp_path):
    from tunesmith.data.builtin.arith import SPLIT_NOTE

    cfg = load_config(overrides=["data.max_samples=20"]).data  # arith: its test split is held out
    notes = load_example_sets(cfg, seed=0)[2]
    assert f"arith test split: {SPLIT_NOTE}" in notes
    rows = write_jsonl(tmp_path / "d.jsonl", [{"instruction": f"Say {i}", "output": str(i)} for i in range(20)])
    user = load_config(overrides=[f"data.train={rows}", "data.eval_split=0.2"]).data
    assert not any("test split" in n for n in load_example_sets(user, seed=0)[2])
