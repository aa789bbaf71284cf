"""data.streaming=true: rows read, tokenized and packed while they are drawn, the same tokens as the
in-memory path, a position that resumes exactly, and clear errors for settings a stream cannot honour."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest

from tunesmith.config.schema import DataConfig
from tunesmith.api.data_entry import build_datasets, build_stream, check_data_config
from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.errors import ConfigError, DataError


def chat_rows(n: int) -> list[dict]:
    """Conversations of varied lengths; every 17th is far too long for max_length 96 (dropped)."""
    rows = []
    for i in range(n):
        words = " ".join(f"w{j}" for j in range(i % 9 + (200 if i % 17 == 5 else 1)))
        rows.append({"messages": [{"role": "user", "content": f"Question {i}: {words}?"},
                                  {"role": "assistant", "content": f"Answer {i} is {i * 7 % 13}."}]})
    return rows


def write_jsonl(path: Path, rows: list[dict], blank_every: int = 0) -> Path:
    lines = []
    for i, r in enumerate(rows):
        lines.append(json.dumps(r))
        if blank_every and i % blank_every == 0:
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def chat_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "chat.jsonl", chat_rows(300), blank_every=50)


def config(path: Path, **changes) -> DataConfig:
    return DataConfig(train=str(path), max_length=96, cache=False, streaming=True, **changes)


def take(stream, n: int) -> list[dict]:
    return list(itertools.islice(iter(stream), n))


def plain(rows: list[dict]) -> list[tuple[list[int], list[int]]]:
    return [(list(r["input_ids"]), list(r["labels"])) for r in rows]


@pytest.mark.parametrize("loss_on", ["assistant", "all"])
def test_streamed_rows_are_the_in_memory_rows(smol_tokenizer, chat_file, loss_on):
    """Same format code, same tokenizing: identical ids and labels, in file order, drops included."""
    in_memory = build_datasets(dataclasses.replace(config(chat_file, loss_on=loss_on), streaming=False,
                                                   packing="none"), smol_tokenizer)
    stream = build_stream(config(chat_file, loss_on=loss_on, packing="none"), smol_tokenizer)
    expected = plain(in_memory.train.to_list())
    assert len(expected) < 300  # the too-long rows were dropped by both
    got = take(stream, len(expected))
    assert plain(got) == expected
    assert stream.stats.dropped_too_long == in_memory.train_stats.dropped_too_long
    assert stream.stats.kept == in_memory.train_stats.kept


def test_stream_starts_again_at_the_end(smol_tokenizer, chat_file):
    stream = build_stream(config(chat_file, packing="none"), smol_tokenizer)
    kept = build_datasets(dataclasses.replace(config(chat_file), streaming=False, packing="none"),
                          smol_tokenizer).train_stats.kept
    rows = take(stream, kept + 5)
    assert plain(rows[kept:]) == plain(rows[:5])
    progress = stream.progress()
    assert progress["passes"] == 1 and progress["bytes_read"] <= progress["total_bytes"]


def test_packed_stream_keeps_the_block_layout(smol_tokenizer, chat_file):
    """Greedy blocks of at most data.max_length with the layout of pack_examples: positions restart,
    each example's first label is -100, seq_lengths add up; unpacked they are the examples in order."""
    examples = plain(take(build_stream(config(chat_file, packing="none"), smol_tokenizer), 120))
    blocks = take(build_stream(config(chat_file, packing="pack"), smol_tokenizer), 30)
    unpacked = []
    for block in blocks:
        assert set(block) == {"input_ids", "labels", "position_ids", "seq_lengths"}
        assert len(block["input_ids"]) == len(block["labels"]) == sum(block["seq_lengths"]) <= 96
        start = 0
        for n in block["seq_lengths"]:
            assert block["position_ids"][start:start + n] == list(range(n))
            assert block["labels"][start] == IGNORE_INDEX
            unpacked.append((block["input_ids"][start:start + n], block["labels"][start + 1:start + n]))
            start += n
    assert [ids for ids, _ in unpacked] == [ids for ids, _ in examples[:len(unpacked)]]
    assert [lab for _, lab in unpacked] == [lab[1:] for _, lab in examples[:len(unpacked)]]
    # greedy: a block is closed only when the next example does not fit
    for block, following in zip(blocks, blocks[1:]):
        assert len(block["input_ids"]) + following["seq_lengths"][0] > 96


def parquet_file(tmp_path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": f"Add {a} and {b}.", "output": f"{a + b}"} for a in range(12) for b in range(10)]
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=25)  # several row groups
    return path


@pytest.fixture
def hub_like_folder(tmp_path, monkeypatch) -> Path:
    """A folder of JSONL shards read the way a hub dataset is (``datasets.load_dataset(..., streaming=True)``,
    its position the dataset's ``state_dict()``): the local files are not offered to the file reader."""
    import tunesmith.data.stream_sources as stream_sources

    folder = tmp_path / "hub"
    folder.mkdir()
    rows = chat_rows(90)
    for k in range(3):
        write_jsonl(folder / f"part-{k}.jsonl", rows[30 * k:30 * (k + 1)])
    monkeypatch.setattr(stream_sources, "check_stream_source", lambda *args, **kwargs: None)
    return folder


@pytest.mark.parametrize("source,settings", [
    ("jsonl", {"packing": "pack"}),
    ("hub", {"packing": "pack", "shuffle_buffer": 3}),
    ("jsonl", {"packing": "none", "shuffle_buffer": 16}),
    ("jsonl", {"packing": "pack", "shuffle_buffer": 7, "transforms": ["strip_whitespace"]}),
    ("parquet", {"packing": "pack", "shuffle_buffer": 5}),
], ids=["pack", "hub", "shuffled", "shuffled-pack-transforms", "parquet"])
def test_a_saved_position_gives_the_rows_that_follow(smol_tokenizer, chat_file, tmp_path, source, settings, request):
    """The position kept for a step, through JSON (as in a checkpoint), starts a new stream at
    exactly the rows an unbroken stream gives next, across the end of the corpus too."""
    path = {"jsonl": lambda: chat_file, "parquet": lambda: parquet_file(tmp_path),
            "hub": lambda: request.getfixturevalue("hub_like_folder")}[source]()
    cfg = config(path, **settings)
    unbroken = build_stream(cfg, smol_tokenizer, seed=3, rows_per_step=6)
    rows = take(unbroken, 6 * 60)
    assert unbroken.progress()["passes"] >= 1  # the run went past the end of the corpus
    for step in (55, 58):
        state = json.loads(json.dumps(unbroken.state_at_step(step)))
        resumed = build_stream(cfg, smol_tokenizer, seed=3, rows_per_step=6)
        resumed.resume_from(state)
        assert resumed.resumed
        assert take(resumed, 6 * 60 - 6 * step) == rows[6 * step:]
        assert not resumed.resumed  # only the next iteration starts there
    with pytest.raises(DataError, match="no position for step 3"):
        unbroken.state_at_step(3)


def test_shuffle_buffer_reorders_by_seed(smol_tokenizer, chat_file):
    in_order = plain(take(build_stream(config(chat_file, packing="none"), smol_tokenizer), 40))
    shuffled = plain(take(build_stream(config(chat_file, packing="none", shuffle_buffer=32), smol_tokenizer, seed=1), 40))
    again = plain(take(build_stream(config(chat_file, packing="none", shuffle_buffer=32), smol_tokenizer, seed=1), 40))
    other = plain(take(build_stream(config(chat_file, packing="none", shuffle_buffer=32), smol_tokenizer, seed=2), 40))
    assert shuffled == again and shuffled != in_order and shuffled != other
    assert set(map(str, shuffled)) <= set(map(str, plain(take(build_stream(config(chat_file, packing="none"),
                                                                        smol_tokenizer), 300))))


def test_bad_rows_are_skipped_and_counted_or_stop_the_run(smol_tokenizer, tmp_path):
    path = tmp_path / "bad.jsonl"
    good = [json.dumps(r) for r in chat_rows(40)]
    path.write_text("\n".join(good[:10] + ["{not json"] + good[10:]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:11: invalid JSON"):
        take(build_stream(config(path, packing="none"), smol_tokenizer), 39)
    stream = build_stream(config(path, packing="none", on_bad_rows="skip"), smol_tokenizer)
    take(stream, 30)  # within the first pass
    assert stream.progress()["bad_rows"] == 1 and stream.progress()["passes"] == 0


def test_nothing_trainable_is_an_error_not_an_endless_loop(smol_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "long.jsonl", [{"text": "word " * 400}] * 3)
    with pytest.raises(DataError, match="none of the 3 rows read can be trained"):
        take(build_stream(config(path, packing="none"), smol_tokenizer), 1)


@pytest.mark.parametrize("changes,key", [
    ({"eval_split": 0.1}, "data.eval_split"),
    ({"packing": "group_by_length"}, "data.packing"),
    ({"num_proc": 2}, "data.num_proc"),
    ({"dedupe": True}, "data.dedupe"),
    ({"max_samples": 10}, "data.max_samples"),
    ({"eval_split_name": "test"}, "data.eval_split_name"),
])
def test_settings_a_stream_cannot_honour_are_errors(chat_file, changes, key):
    with pytest.raises(ConfigError, match=f"{key}: .* cannot be used with data.streaming=true"):
        check_data_config(config(chat_file, **changes))


def test_sources_that_cannot_stream_are_errors(tmp_path):
    csv = tmp_path / "rows.csv"
    csv.write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"data.streaming: data.train reads .*rows.csv \(.csv\); a stream reads"):
        check_data_config(config(csv))
    with pytest.raises(ConfigError, match="built-in dataset made in memory"):
        check_data_config(DataConfig(train="arith", streaming=True))


def test_classification_stream_needs_label_names(smol_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "cls.jsonl", [{"text": f"t{i}", "label": ["neg", "pos"][i % 2]} for i in range(20)])
    with pytest.raises(ConfigError, match="data.label_names: a stream cannot see every label"):
        build_stream(config(path), smol_tokenizer, task="sequence_classification")
    stream = build_stream(config(path, label_names=["neg", "pos"]), smol_tokenizer, task="sequence_classification")
    assert [r["labels"] for r in take(stream, 4)] == [0, 1, 0, 1]


def test_streaming_bundle_holds_out_data_eval(smol_tokenizer, chat_file, tmp_path):
    held = write_jsonl(tmp_path / "eval.jsonl", chat_rows(8))
    bundle = build_datasets(config(chat_file, packing="pack", eval=str(held)), smol_tokenizer)
    assert bundle.streamed and len(bundle.held_out) == 8 and len(bundle.eval) == 7  # one is too long
    assert any("held-out rows are data.eval" in note for note in bundle.notes)
    assert any("data.cache: not used" in note for note in build_datasets(
        dataclasses.replace(config(chat_file), cache=True), smol_tokenizer).notes)


def test_shuffle_buffer_without_streaming_is_an_error():
    from tunesmith.config import load_config

    with pytest.raises(ConfigError, match="data.shuffle_buffer"):
        load_config(overrides=["data.shuffle_buffer=100"])


def test_data_inspect_reads_the_first_rows_of_a_stream(tmp_path, capsys):
    from tunesmith.cli.main import main

    path = write_jsonl(tmp_path / "big.jsonl", chat_rows(3000))
    assert main(["data", "inspect", f"data.train={path}", "data.streaming=true", "data.format=messages",
                 "-n", "1", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "Train: " in out and "Padding waste" in out
    assert "inspected the first 1000 training examples only" in out
    read = int(out.split("training examples only (")[1].split(" rows read")[0])
    assert 1000 <= read < 3000  # the file was not read to its end


def test_device_aware_loading_batches_a_stream(tmp_path):
    from tunesmith.api.data_steps import device_aware_data_loading, generate_dataset_config

    path = write_jsonl(tmp_path / "t.jsonl", [{"instruction": f"Add {i} and 2.", "output": str(i + 2)} for i in range(50)])
    cfg = generate_dataset_config(str(path), ["packing"], {"data.streaming": True, "data.max_length": 64,
                                                          "batch_size": 4})
    batch = next(iter(device_aware_data_loading(cfg, target_device="cpu")))
    assert batch["input_ids"].shape[0] == 4 and batch["position_ids"].shape == batch["input_ids"].shape
    assert batch["input_ids"].shape[1] <= 64


def test_a_position_in_files_that_changed_is_refused(smol_tokenizer, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", chat_rows(100))
    write_jsonl(folder / "b.jsonl", chat_rows(100))
    cfg = config(folder, packing="none")
    stream = build_stream(cfg, smol_tokenizer, rows_per_step=4)
    take(stream, 100)
    state = json.loads(json.dumps(stream.state_at_step(20)))  # 128 rows read: in b.jsonl
    assert state["position"]["path"].endswith("b.jsonl")
    (folder / "a2.jsonl").write_text((folder / "a.jsonl").read_text(), encoding="utf-8")  # now file 2 is a2.jsonl
    resumed = build_stream(cfg, smol_tokenizer, rows_per_step=4)
    resumed.resume_from(state)
    with pytest.raises(DataError, match="the files changed since the checkpoint was saved"):
        take(resumed, 1)


def test_a_streaming_run_asks_a_builtin_data_eval_with_its_system_prompt(smol_tokenizer, chat_file):
    """A stream of a file scored on ``arith`` asks arith's questions as the in-memory path does."""
    from tunesmith.data.builtin.arith import SYSTEM_PROMPT

    bundle = build_datasets(config(chat_file, eval="arith"), smol_tokenizer)
    assert bundle.streamed and bundle.held_out[0].messages[0].content == SYSTEM_PROMPT
