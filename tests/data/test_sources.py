"""Sources: every file kind read from real files, exact ``where`` strings, and file:line errors."""

import json

import pytest

from tunesmith.data.sources import check_source, load_rows
from tunesmith.errors import DataError

ROWS = [{"instruction": "Add 1 and 2.", "output": "3"}, {"instruction": "Add 2 and 2.", "output": "4"}]


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def test_jsonl_rows_carry_line_numbers_and_skip_blank_lines(tmp_path):
    path = write(tmp_path / "d.jsonl", json.dumps(ROWS[0]) + "\n\n  \n" + json.dumps(ROWS[1]) + "\n")
    assert load_rows(str(path)) == [(ROWS[0], f"{path}:1"), (ROWS[1], f"{path}:4")]


def test_json_list_and_data_key_and_misnamed_jsonl(tmp_path):
    listed = write(tmp_path / "a.json", json.dumps(ROWS))
    assert load_rows(str(listed)) == [(ROWS[0], f"{listed}: item 0"), (ROWS[1], f"{listed}: item 1")]
    keyed = write(tmp_path / "b.json", json.dumps({"data": ROWS[:1]}))
    assert load_rows(str(keyed)) == [(ROWS[0], f"{keyed}: item 0")]
    lines = write(tmp_path / "c.json", "\n".join(json.dumps(r) for r in ROWS))  # JSON Lines named .json
    assert load_rows(str(lines)) == [(ROWS[0], f"{lines}:1"), (ROWS[1], f"{lines}:2")]


def test_csv_where_is_the_physical_line_a_record_starts_on(tmp_path):
    path = write(tmp_path / "d.csv", 'instruction,output\n"Say\nhi",hello\n\nAdd,4\n')
    assert load_rows(str(path)) == [({"instruction": "Say\nhi", "output": "hello"}, f"{path}:2"),
                                    ({"instruction": "Add", "output": "4"}, f"{path}:5")]


def test_tsv_uses_tabs(tmp_path):
    path = write(tmp_path / "d.tsv", "text\tlabel\na, b\t1\n")
    assert load_rows(str(path)) == [({"text": "a, b", "label": "1"}, f"{path}:2")]


def test_parquet_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert load_rows(str(path)) == [(ROWS[0], f"{path}: row 0"), (ROWS[1], f"{path}: row 1")]


def test_txt_one_row_per_non_blank_line(tmp_path):
    path = write(tmp_path / "d.txt", "First line.\r\n\r\nSecond line.\n")
    assert load_rows(str(path)) == [({"text": "First line."}, f"{path}:1"), ({"text": "Second line."}, f"{path}:3")]


def test_folder_reads_supported_files_sorted_and_recursively(tmp_path):
    folder = tmp_path / "data"
    b = write(folder / "b.jsonl", json.dumps(ROWS[1]) + "\n")
    a = write(folder / "sub" / "a.csv", "instruction,output\nx,y\n")
    write(folder / "README.md", "ignored")
    write(folder / ".hidden" / "c.jsonl", "not read\n")
    assert [w for _, w in load_rows(str(folder))] == [f"{b}:1", f"{a}:2"]


def test_glob_matches_files(tmp_path):
    one = write(tmp_path / "p1.jsonl", json.dumps(ROWS[0]) + "\n")
    two = write(tmp_path / "p2.jsonl", json.dumps(ROWS[1]) + "\n")
    write(tmp_path / "other.csv", "a\n1\n")
    assert load_rows(str(tmp_path / "p*.jsonl")) == [(ROWS[0], f"{one}:1"), (ROWS[1], f"{two}:1")]
    with pytest.raises(DataError, match="matches nothing"):
        check_source(str(tmp_path / "q*.jsonl"), "data.train")


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    import datasets

    datasets.disable_progress_bars()
    single = tmp_path / "single"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(single))
    assert load_rows(str(single)) == [(ROWS[0], f"{single}: row 0"), (ROWS[1], f"{single}: row 1")]
    splits = tmp_path / "splits"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS),
                          "test": datasets.Dataset.from_list(ROWS[1:])}).save_to_disk(str(splits))
    assert load_rows(str(splits), split="test") == [(ROWS[1], f"{splits}[test]:0")]
    with pytest.raises(DataError, match="no split 'tset'.*Did you mean 'test'"):
        load_rows(str(splits), split="tset")
    # A saved dataset inside a data folder is not mistaken for JSON files.
    write(tmp_path / "x.jsonl", json.dumps(ROWS[0]) + "\n")
    assert len(load_rows(str(tmp_path))) == 1


@pytest.mark.parametrize("name, content, where, column", [
    ("d.csv", b"instruction,output\nok,fine\nbad,caf\xff\n", 3, 8),
    ("d.tsv", b"text\tlabel\n\xfe\t1\n", 2, 1),
    ("d.jsonl", b'{"text": "ok"}\n{"text": "\xff"}\n', 2, 11),
    ("d.txt", b"fine\n\n  x\xc3\n", 3, 4),
    ("d.json", b'[\n {"text": "ok"},\n {"text": "\xff"}\n]', 3, 12),
])
def test_non_utf8_names_file_line_byte_and_column(tmp_path, name, content, where, column):
    path = write(tmp_path / name, content)
    with pytest.raises(DataError) as err:
        load_rows(str(path))
    byte = content.split(b"\n")[where - 1]
    bad = next(b for b in byte if b >= 0x80)
    assert str(err.value) == (f"{path}:{where}: not valid UTF-8 (byte 0x{bad:02x} at column {column}); "
                              "re-save the file as UTF-8")


def test_utf8_bom_is_dropped_and_utf16_is_named(tmp_path):
    bom = write(tmp_path / "bom.csv", "\ufefftext,label\nhi,1\n".encode("utf-8"))
    assert load_rows(str(bom)) == [({"text": "hi", "label": "1"}, f"{bom}:2")]
    utf16 = write(tmp_path / "w.csv", "text\nhi\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16; re-save it as UTF-8"):
        load_rows(str(utf16))


def test_malformed_json_names_file_line_and_error(tmp_path):
    lines = write(tmp_path / "d.jsonl", '{"a": 1}\n{"a": oops}\n')
    with pytest.raises(DataError) as err:
        load_rows(str(lines))
    assert str(err.value) == f"{lines}:2: invalid JSON: Expecting value (column 7)"
    assert err.value.reason == "invalid JSON"
    listed = write(tmp_path / "d.json", '[\n {"a": 1},\n {"a": }\n]')
    with pytest.raises(DataError, match=rf"{listed}:3: invalid JSON: Expecting value \(column 8\)"):
        load_rows(str(listed))
    not_object = write(tmp_path / "n.jsonl", '[1, 2]\n')
    with pytest.raises(DataError, match=rf"{not_object}:1: expected a JSON object, got list"):
        load_rows(str(not_object))


def test_csv_wrong_field_count(tmp_path):
    path = write(tmp_path / "d.csv", "instruction,input,output\na,b,c\na,b\n")
    with pytest.raises(DataError) as err:
        load_rows(str(path))
    assert str(err.value) == f"{path}:3: expected 3 columns (instruction, input, output), found 2"
    assert err.value.reason == "wrong field count"
    unclosed = write(tmp_path / "q.csv", 'a,b\n"x,1\n2,3\n')
    with pytest.raises(DataError, match=rf"{unclosed}:2: expected 2 columns .* spans lines 2-3: is a quote left open"):
        load_rows(str(unclosed))


@pytest.mark.parametrize("name, content, message", [
    ("e.jsonl", "", "the file is empty"),
    ("e.txt", "\n  \n", "the file is empty"),
    ("e.csv", "a,b\n", "the file holds no rows"),
    ("e.json", "[]", "the file holds no rows"),
    ("e.parquet", b"", "the file is empty"),
])
def test_empty_files_are_errors(tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(DataError, match=f"{path}: {message}"):
        load_rows(str(path))


def test_skipping_collects_bad_records_and_keeps_reading(tmp_path):
    path = write(tmp_path / "d.jsonl", b'{"a": 1}\n{oops\n[2]\n{"a": "\xff"}\n{"a": 5}\n')
    bad = []
    rows = load_rows(str(path), bad_rows=bad)
    assert rows == [({"a": 1}, f"{path}:1"), ({"a": 5}, f"{path}:5")]
    assert [(b.where, b.reason) for b in bad] == [(f"{path}:2", "invalid JSON"), (f"{path}:3", "not an object"),
                                                  (f"{path}:4", "not UTF-8")]
    assert bad[0].message.startswith(f"{path}:2: invalid JSON: ")
    csv_path = write(tmp_path / "d.csv", "a,b\n1\n2,3\n")
    bad = []
    assert load_rows(str(csv_path), bad_rows=bad) == [({"a": "2", "b": "3"}, f"{csv_path}:3")]
    assert [(b.where, b.reason) for b in bad] == [(f"{csv_path}:2", "wrong field count")]
    # Every record bad: no rows, no "empty file" error; the bad-row policy decides.
    all_bad = write(tmp_path / "all.jsonl", "{x\n")
    bad = []
    assert load_rows(str(all_bad), bad_rows=bad) == [] and len(bad) == 1


def test_check_source_is_cheap_and_specific(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        check_source(str(tmp_path / "missing.jsonl"), "data.train")
    with pytest.raises(DataError, match=r"has suffix '\.xlsx'"):
        check_source(str(write(tmp_path / "d.xlsx", "x")), "data.train")
    with pytest.raises(DataError, match="holds no .* files .*found: notes.md"):
        check_source(str(write(tmp_path / "docs" / "notes.md", "x").parent), "data.eval")
    with pytest.raises(DataError, match="data.eval: .*Did you mean 'arith'"):
        check_source("arth", "data.eval")
    check_source("arith", "data.train")
    check_source("some-user/some-dataset", "data.train")  # a hub name: checked when loaded


def test_builtin_rows_keep_their_where():
    rows = load_rows("arith", split="test")
    assert rows[0][1] == "arith[test]:0" and len(rows) == 200


def test_hub_dataset_offline_names_key_dataset_and_remedy():
    with pytest.raises(DataError) as err:
        load_rows("some-user/not-cached", key="data.mix[0].train", subset="en")
    message = str(err.value)
    for part in ["data.mix[0].train", "'some-user/not-cached'", "subset 'en'", "hub could not be reached",
                 "local cache", "hf download --repo-type dataset some-user/not-cached", "local file"]:
        assert part in message
