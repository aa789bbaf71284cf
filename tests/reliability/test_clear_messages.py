"""Messages that name what went wrong and where: the split, the missing path, the file that decided
a folder's format, the JSON shapes that are read; and skipped rows counted for every split."""

from __future__ import annotations

import json

import pytest

from tunesmith.cli.main import main
from tunesmith.config import load_config
from tunesmith.api.data_entry import load_example_sets
from tunesmith.errors import DataError

ALPACA = [{"instruction": f"Add {a} and 1.", "output": f"#### {a + 1}"} for a in range(10)]


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def data_config(*overrides):
    return load_config(overrides=list(overrides)).data


def test_an_eval_split_that_leaves_nothing_to_train_names_the_split(tmp_path):
    rows = write_jsonl(tmp_path / "rows.jsonl", ALPACA)
    with pytest.raises(DataError, match=r"data.eval_split: 0.999 holds out 10 of the 10 examples .* leaves none"):
        load_example_sets(data_config(f"data.train={rows}", "data.eval_split=0.999"), 0)


@pytest.mark.parametrize("command", [["generate", "{run}", "hi"], ["chat", "{run}"], ["eval", "{run}"],
                                     ["report", "{run}"], ["merge", "{run}", "{out}"], ["serve", "{run}"]])
def test_a_mistyped_run_path_does_not_exist(command, tmp_path, capsys):
    run, out = tmp_path / "runz" / "arith", tmp_path / "merged"
    assert main([part.format(run=run, out=out) for part in command]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {run}: does not exist; give a run directory (such as runs/NAME, printed at the end of " \
                  "`tunesmith train`) or a model folder"


def test_a_folder_of_two_formats_says_which_file_decided(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", ALPACA[:3])
    write_jsonl(folder / "b.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                    {"role": "assistant", "content": "yo"}]}])
    with pytest.raises(DataError) as err:
        load_example_sets(data_config(f"data.train={folder}"), 0)
    message = str(err.value)
    assert "b.jsonl:1" in message and "detected from" in message and "a.jsonl:1" in message


def test_a_json_object_without_a_row_list_lists_the_supported_shapes(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"rows": ALPACA}), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_example_sets(data_config(f"data.train={path}"), 0)
    message = str(err.value)
    assert "'rows'" in message and '"data"' in message and "JSON Lines" in message and "a list of row objects" in message


def test_rows_skipped_from_every_split_are_counted(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [*ALPACA, {"instruction": 3}])
    held = write_jsonl(tmp_path / "eval.jsonl", [*ALPACA[:5], {"nothing": "here"}, {"instruction": ["x"]}])
    mixed = write_jsonl(tmp_path / "mix.jsonl", [*ALPACA[:4], {"other": 1}])
    cfg = data_config(f"data.train={train}", f"data.eval={held}", "data.on_bad_rows=skip", "data.format=alpaca",
                      "data.max_bad_fraction=0.5", f"data.mix=[{{train: '{mixed}', weight: 1.0}}]")
    _, held_out, notes = load_example_sets(cfg, 0)
    assert len(held_out) == 5
    joined = "\n".join(notes)
    assert "data.train: skipped 1 of 11 rows" in joined
    assert "data.eval: skipped 2 of 7 rows" in joined
    assert "data.mix[0]: skipped 1 of 5 rows" in joined
