import json

import pytest

from tunesmith.config import load_config
from tunesmith.api.data_entry import to_conversations
from tunesmith.data.formats import detect_format
from tunesmith.api.data_entry import build_datasets, check_data_config, load_conversations
from tunesmith.data.sources import load_rows
from tunesmith.errors import ConfigError, DataError


def test_alpaca_row_becomes_conversation():
    (c,) = to_conversations([({"instruction": "Add", "input": "2 and 3", "output": "5"}, "f:1")], "auto")
    assert [(m.role, m.content) for m in c.messages] == [("user", "Add\n\n2 and 3"), ("assistant", "5")]
    assert c.where == "f:1"


def test_messages_row_keeps_roles_and_train_flags():
    row = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello", "train": False}]}
    (c,) = to_conversations([(row, "f:2")], "messages")
    assert [m.role for m in c.messages] == ["system", "user", "assistant"]
    assert c.messages[2].train is False


@pytest.mark.parametrize(
    "row, fmt, expected",
    [
        ({"instruction": "x"}, "alpaca", ["f:7", "missing column 'output'"]),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages", ["f:7", "messages[0]", "'bot'", "assistant"]),
        ({"messages": [{"role": "user", "content": "x"}]}, "messages", ["f:7", "no assistant message"]),
        ({"messages": "hi"}, "messages", ["f:7", "non-empty list"]),
        ({"foo": 1}, "auto", ["f:7", "cannot tell the data format", "instruction"]),
        ({"instruction": ["a"], "output": "b"}, "alpaca", ["f:7", "'instruction' must be text"]),
    ],
)
def test_bad_rows_name_the_location(row, fmt, expected):
    with pytest.raises(DataError) as err:
        to_conversations([(row, "f:7")], fmt)
    for part in expected:
        assert part in str(err.value)


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": oops}\n')
    with pytest.raises(DataError) as err:
        load_rows(str(path))
    assert f"{path}:3" in str(err.value)


def test_json_list_file(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"instruction": "a", "output": "b"}]))
    rows = load_rows(str(path))
    assert rows[0][0]["output"] == "b" and "item 0" in rows[0][1]


def test_unknown_sources_fail_before_loading(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        check_data_config(load_config(overrides=[f"data.train={tmp_path}/missing.jsonl"]).data)
    with pytest.raises(DataError, match="Did you mean 'arith'"):
        check_data_config(load_config(overrides=["data.train=arth"]).data)
    with pytest.raises(ConfigError, match="Did you mean 'alpaca'"):
        check_data_config(load_config(overrides=["data.format=alpacca"]).data)


def test_hub_dataset_offline_is_a_clear_error():
    with pytest.raises(DataError) as err:
        load_rows("some-user/not-a-cached-dataset")
    assert "hub" in str(err.value) and "some-user/not-a-cached-dataset" in str(err.value)


def test_eval_split_and_max_samples_are_seeded(alpaca_file):
    cfg = load_config(overrides=[f"data.train={alpaca_file}", "data.format=alpaca", "data.eval_split=0.25",
                                 "data.max_samples=5"]).data
    train_a, held_a = load_conversations(cfg, seed=1)
    train_b, held_b = load_conversations(cfg, seed=1)
    assert len(held_a) == 4 and len(train_a) == 5
    assert [c.where for c in train_a] == [c.where for c in train_b]
    assert not {c.where for c in train_a} & {c.where for c in held_a}


def test_build_datasets_reports_when_nothing_is_trainable(smol_tokenizer, alpaca_file):
    cfg = load_config(overrides=[f"data.train={alpaca_file}", "data.max_length=8"]).data
    with pytest.raises(DataError) as err:
        build_datasets(cfg, smol_tokenizer, seed=0)
    assert "longer than data.max_length=8" in str(err.value)


def test_builtin_arith_has_held_out_test_split():
    cfg = load_config().data
    train, held = load_conversations(cfg, seed=0)
    assert len(train) == 2000 and len(held) == 200
    assert held[0].reference is not None
    assert held[0].messages[0].role == "system"  # data.system_prompt from the arith config


def test_builtin_held_out_rows_bring_their_system_prompt_whatever_the_run_trained_on(tmp_path):
    """A run trained on a file and scored on a built-in asks the built-in's questions as the
    built-in asks them (with its system prompt, as the base model is asked); a system prompt the
    user sets wins."""
    from tunesmith.data.builtin.arith import SYSTEM_PROMPT

    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "1 + 1?"},
                                             {"role": "assistant", "content": "#### 2"}]}) + "\n")
    cfg = load_config(overrides=[f"data.train={data}", "data.eval=arith"]).data
    train, held = load_conversations(cfg, seed=0)
    assert train[0].messages[0].role == "user"  # the file's rows are as written
    assert held[0].messages[0].role == "system" and held[0].messages[0].content == SYSTEM_PROMPT
    cfg = load_config(overrides=[f"data.train={data}", "data.eval=arith", "data.system_prompt=Be brief."]).data
    train, held = load_conversations(cfg, seed=0)
    assert train[0].messages[0].content == "Be brief." and held[0].messages[0].content == "Be brief."
