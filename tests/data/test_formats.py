"""Row formats: parsing to canonical examples, detection priority, column mapping, labels, bad rows."""

from __future__ import annotations

import pytest

from tunesmith.data.examples import ClassificationExample, Conversation, Message, Seq2SeqExample, TextExample
from tunesmith.api.data_entry import prepare_parser, to_conversations, to_examples
from tunesmith.data.formats import FORMATS, detect_format, detection_order
from tunesmith.errors import ConfigError, DataError


def parse(row, fmt="auto", columns=None, label_names=None):
    (example,), info = to_examples([(row, "f:3")], fmt, columns, label_names)
    return example, info


def turns(conversation):
    return [(m.role, m.content) for m in conversation.messages]


# --- every format ----------------------------------------------------------------------------


@pytest.mark.parametrize("row, fmt, expected", [
    ({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Yo"}]}, "messages",
     [("system", "S"), ("user", "Hi"), ("assistant", "Yo")]),
    ({"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Hi"},
                        {"from": "gpt", "value": "Yo"}, {"from": "user", "value": "And?"},
                        {"from": "assistant", "value": "Done"}]}, "sharegpt",
     [("system", "S"), ("user", "Hi"), ("assistant", "Yo"), ("user", "And?"), ("assistant", "Done")]),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}], "system": "S"},
     "sharegpt", [("system", "S"), ("user", "Hi"), ("assistant", "Yo")]),
    ({"instruction": "Add", "input": "2 and 3", "output": "5", "system": "S"}, "alpaca",
     [("system", "S"), ("user", "Add\n\n2 and 3"), ("assistant", "5")]),
    ({"instruction": "Add 2 and 3", "input": "", "output": 5}, "alpaca", [("user", "Add 2 and 3"), ("assistant", "5")]),
    ({"prompt": "2+2=", "completion": "4"}, "prompt_completion", [("user", "2+2="), ("assistant", "4")]),
    ({"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Yo"}]},
     "prompt_completion", [("user", "Hi"), ("assistant", "Yo")]),
    ({"question": "Where is Paris?", "answer": "France"}, "qa", [("user", "Where is Paris?"), ("assistant", "France")]),
    ({"question": "Where is it?", "answer": "France", "context": "Paris is in France."}, "qa",
     [("user", "Paris is in France.\n\nWhere is it?"), ("assistant", "France")]),
])
def test_chat_formats(row, fmt, expected):
    conversation, info = parse(row)
    assert isinstance(conversation, Conversation)
    assert info.format == fmt and info.detected and info.kind == "conversation"
    assert turns(conversation) == expected and conversation.where == "f:3"


def test_task_formats():
    assert parse({"text": "Once upon a time"})[0] == TextExample("Once upon a time", where="f:3")
    assert parse({"text": "good", "label": 1})[0] == ClassificationExample("good", 1, where="f:3")
    assert parse({"sentence1": "A", "sentence2": "B", "label": 0})[0] == ClassificationExample(
        "A", 0, text_pair="B", where="f:3")
    assert parse({"source": "Hallo", "target": "Hello"})[0] == Seq2SeqExample("Hallo", "Hello", where="f:3")


def test_qa_answer_is_the_reference_and_messages_keep_train_flags():
    assert parse({"question": "q", "answer": 7})[0].reference == "7"
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo", "train": False}]}
    assert parse(row)[0].messages[1] == Message("assistant", "Yo", False)


def test_format_can_be_forced():
    example, info = parse({"text": "a", "label": 0}, fmt="text")
    assert example == TextExample("a", where="f:3") and not info.detected


# --- detection -------------------------------------------------------------------------------


def test_detection_order_is_fixed():
    assert detection_order() == ["tokenized", "preference", "kto", "messages", "sharegpt", "alpaca",
                                 "prompt_completion", "prompt_only", "qa", "pair_classification", "classification",
                                 "seq2seq", "text"]
    assert set(detection_order()) == set(FORMATS.names())


@pytest.mark.parametrize("columns, expected", [
    (["messages", "conversations", "answer"], "messages"),
    (["conversations", "instruction", "output"], "sharegpt"),
    (["instruction", "output", "prompt", "completion"], "alpaca"),
    (["prompt", "completion", "question", "answer"], "prompt_completion"),
    (["question", "answer", "text", "label"], "qa"),
    (["sentence1", "sentence2", "label", "text"], "pair_classification"),
    (["text", "label", "source", "target"], "classification"),
    (["source", "target", "text"], "seq2seq"),
    (["text", "id"], "text"),
])
def test_detection_priority(columns, expected):
    assert detect_format({c: "x" for c in columns}, "f:1") == expected


def test_detection_uses_the_column_mapping():
    assert detect_format({"q": "x", "a": "y"}, "f:1", {"question": "q", "answer": "a"}) == "qa"
    example, info = parse({"review": "Great", "sentiment": "pos", "id": 4},
                          columns={"text": "review", "label": "sentiment"})
    assert example == ClassificationExample("Great", 0, where="f:3", label_name="pos")
    assert info.format == "classification" and info.columns == {"text": "review", "label": "sentiment"}
    assert "text<-review" in info.describe() and "0=pos" in info.describe()


def test_detection_skips_a_first_row_that_fits_no_format():
    rows = [({"instrution": "a", "output": "b"}, "f:1"), ({"instruction": "a", "output": "b"}, "f:2")]
    with pytest.raises(DataError, match="f:1: missing column 'instruction'; the row has 'instrution': a misspelling"):
        to_examples(rows)
    with pytest.raises(DataError, match="Column 'instrution': Did you mean 'instruction'?"):
        to_examples(rows[:1])


def test_unknown_format_lists_what_is_expected():
    with pytest.raises(DataError) as err:
        detect_format({"foo": 1}, "f:7")
    for part in ("f:7", "cannot tell the data format", "[foo]", "alpaca: instruction, output", "data.columns"):
        assert part in str(err.value)
    assert err.value.reason == "unknown format"


def test_column_mapping_errors():
    with pytest.raises(DataError, match="f:3: data.columns maps 'question' to the column 'qq', which this row "
                                        "lacks. Did you mean 'q'\\? Columns found: a, q"):
        parse({"q": "x", "a": "y"}, columns={"question": "qq", "answer": "a"})
    with pytest.raises(ConfigError, match="'questoin' is not a column any format reads. Did you mean 'question'"):
        parse({"q": "x"}, columns={"questoin": "q"})
    with pytest.raises(ConfigError, match="'label' is not a column the qa format reads"):
        parse({"q": "x"}, fmt="qa", columns={"label": "q"})


# --- labels ----------------------------------------------------------------------------------


def classify(labels, label_names=None, columns=None):
    key = (columns or {}).get("label", "label")
    rows = [({"text": f"t{i}", key: v}, f"f:{i + 1}") for i, v in enumerate(labels)]
    examples, info = to_examples(rows, "auto", columns, label_names)
    return [e.label for e in examples], info


def test_labels_ids_names_and_given_names():
    assert classify([0, 2, 1.0]) == ([0, 2, 1], classify([0, 2, 1.0])[1])
    assert classify([0, 2])[1].label_names == []
    ids, info = classify(["pos", "neg", "pos", "mid"])
    assert ids == [2, 1, 2, 0] and info.label_names == ["mid", "neg", "pos"]
    assert "labels 0=mid, 1=neg, 2=pos" in info.describe()
    ids, info = classify(["yes", 0, "no"], label_names=["no", "yes"])
    assert ids == [1, 0, 0] and info.label_names == ["no", "yes"]
    examples, _ = to_examples([({"text": "a", "label": "yes"}, "f:1")], label_names=["no", "yes"])
    assert examples[0].label_name == "yes"


@pytest.mark.parametrize("labels, label_names, parts", [
    ([0, True], None, ["f:2", "label True", "boolean", "Allowed"]),
    ([0, 1.5], None, ["f:2", "label 1.5", "fraction", "Allowed"]),
    ([0, -1], None, ["f:2", "label -1", "negative", "Allowed"]),
    ([0, [1]], None, ["f:2", "label must be an integer id or a name", "list"]),
    ([0, ""], None, ["f:2", "empty string"]),
    (["pos", 1], None, ["f:2", "label 1 is an id but other rows use names (pos)", "data.label_names"]),
    (["no", "maybe"], ["no", "yes"],
     ["f:2", "label 'maybe' is not a known label name", "Allowed: ids 0..1 or names no, yes"]),
    (["no", "yess"], ["no", "yes"], ["f:2", "Did you mean 'yes'"]),
    ([0, 2], ["no", "yes"], ["f:2", "label 2 is out of range", "ids 0..1"]),
])
def test_bad_labels(labels, label_names, parts):
    with pytest.raises(DataError) as err:
        classify(labels, label_names)
    for part in parts:
        assert part in str(err.value)
    assert err.value.reason == "bad label"


def test_bad_label_names_the_mapped_column():
    with pytest.raises(DataError, match="f:2: label \\(column 'sentiment'\\) 0.5 has a fraction"):
        classify([1, 0.5], columns={"text": "text", "label": "sentiment"})
    with pytest.raises(DataError, match="f:1: column 'label' is null"):
        classify([None])


def test_tolerant_parser_leaves_bad_rows_to_each_parse():
    rows = [({"text": "a", "label": "pos"}, "f:1"), ({"text": "b", "label": True}, "f:2"),
            ({"text": "c"}, "f:3"), ({"text": "d", "label": "neg"}, "f:4")]
    parse_row, info = prepare_parser(rows, strict=False)
    assert info.label_names == ["neg", "pos"]
    assert parse_row(*rows[3]).label == 0
    with pytest.raises(DataError, match="f:2: label True is a boolean"):
        parse_row(*rows[1])
    with pytest.raises(DataError, match="f:3: missing column 'label'"):
        parse_row(*rows[2])
    with pytest.raises(DataError, match="f:2"):
        prepare_parser(rows, strict=True)


# --- bad rows --------------------------------------------------------------------------------


def msgs(*pairs, key="messages", role="role", content="content"):
    return {key: [{role: r, content: c} for r, c in pairs]}


@pytest.mark.parametrize("row, fmt, parts, reason", [
    ({"instruction": "x"}, "alpaca", ["missing column 'output'", "Columns found: instruction"], "missing column"),
    ({"instruction": "x", "ouput": "y"}, "alpaca",
     ["missing column 'output'; the row has 'ouput': a misspelling? (rename it, or set data.columns={output: ouput})"],
     "missing column"),
    ({"question": "q", "answr": "a"}, "qa", ["missing column 'answer'; the row has 'answr'",
                                            "Columns found: answr, question"], "missing column"),
    ({"instruction": ["a"], "output": "b"}, "alpaca", ["'instruction' must be text, got list"], "wrong column type"),
    ({"text": True, "label": 0}, "classification", ["'text' must be text, got bool"], "wrong column type"),
    ({"prompt": "p", "completion": ""}, "prompt_completion", ["'completion' is empty"], "empty text"),
    ({"source": "  ", "target": "t"}, "seq2seq", ["'source' is empty"], "empty text"),
    ({"question": None, "answer": "a"}, "qa", ["'question' is null"], "empty text"),
    ({"messages": "hi"}, "messages", ["non-empty list"], "wrong column type"),
    ({"messages": ["hi"]}, "messages", ["messages[0] must be an object"], "wrong column type"),
    (msgs(("bot", "x")), "messages", ["messages[0]: role 'bot' is not allowed", "assistant"], "bad role"),
    (msgs(("user", "x"), ("asistant", "y")), "messages", ["messages[1]", "Did you mean 'assistant'?"], "bad role"),
    (msgs(("human", "x"), ("robot", "y"), key="conversations", role="from", content="value"), "sharegpt",
     ["conversations[1]: from 'robot' is not allowed", "human", "gpt"], "bad role"),
    ({"messages": [{"from": "human", "value": "x"}]}, "messages", ["messages[0]", "data.format=sharegpt"], "bad role"),
    (msgs(("user", "x"), ("assistant", "")), "messages", ["messages[1]: field 'content' is empty"], "empty text"),
    ({"messages": [{"role": "user"}]}, "messages", ["messages[0]: missing field 'content'"], "missing column"),
    ({"messages": [{"role": "user", "content": "x", "train": "no"}, {"role": "assistant", "content": "y"}]},
     "messages", ["messages[0]: 'train' must be true or false"], "wrong column type"),
    (msgs(("user", "a"), ("user", "b"), ("assistant", "c")), "messages",
     ["messages[1] is a second 'user' turn in a row", "alternate"], "bad turn order"),
    (msgs(("user", "a"), ("assistant", "b"), ("assistant", "c")), "messages",
     ["messages[2] is a second 'assistant' turn"], "bad turn order"),
    (msgs(("user", "a"), ("assistant", "b"), ("user", "c")), "messages",
     ["messages[2] is a 'user' turn", "must end with an assistant turn"], "bad turn order"),
    (msgs(("system", "s"), ("user", "a")), "messages", ["no assistant message"], "no assistant message"),
    (msgs(("human", "a"), ("human", "b"), key="conversations", role="from", content="value"), "sharegpt",
     ["conversations[1] is a second 'user' turn"], "bad turn order"),
    ({"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "user", "content": "b"}]},
     "prompt_completion", ["prompt + completion[1] is a second 'user' turn"], "bad turn order"),
])
def test_bad_rows_name_where_and_field(row, fmt, parts, reason):
    # With auto, a row missing a required column fits no format: see test_unknown_format_lists_what_is_expected.
    for given in (fmt, "auto") if reason != "missing column" or fmt == "messages" else (fmt,):
        with pytest.raises(DataError) as err:
            to_examples([(row, "f:7")], given)
        assert str(err.value).startswith("f:7: ")
        for part in parts:
            assert part in str(err.value)
        assert err.value.reason == reason


def test_a_row_that_is_not_an_object():
    with pytest.raises(DataError, match="f:2: expected an object"):
        to_examples([({"text": "a"}, "f:1"), (["text"], "f:2")])


def test_to_conversations_rejects_task_formats():
    assert turns(to_conversations([({"prompt": "a", "completion": "b"}, "f:1")], "auto")[0]) == [
        ("user", "a"), ("assistant", "b")]
    with pytest.raises(DataError, match="the classification format gives classification examples"):
        to_conversations([({"text": "a", "label": 0}, "f:1")], "auto")


def test_empty_input_and_unknown_format():
    assert to_examples([], "auto") == ([], to_examples([], "auto")[1])
    with pytest.raises(ConfigError, match="Did you mean 'sharegpt'"):
        to_examples([({"a": 1}, "f:1")], "sharegtp")


# -- pre-tokenized rows ---------------------------------------------------------------------------
def test_tokenized_rows_are_detected_and_kept_as_ids():
    from tunesmith.data.examples import TokenizedExample

    rows = [({"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, "t:1"),
            ({"input_ids": [8, 9, 0, 0], "attention_mask": [1, 1, 0, 0]}, "t:2")]
    examples, info = to_examples(rows, "auto")
    assert info.format == "tokenized"
    assert examples == [TokenizedExample([5, 6, 7], [-100, 6, 7], where="t:1"),
                        TokenizedExample([8, 9], None, where="t:2")]  # padding dropped; all tokens trained


@pytest.mark.parametrize("row, match", [
    ({"input_ids": "5 6 7"}, "'input_ids' must be a list of integers"),
    ({"input_ids": [5, 6], "labels": [6]}, "'labels' has 1 entries but 'input_ids' has 2"),
    ({"input_ids": []}, "holds no tokens"),
])
def test_bad_tokenized_rows_name_the_problem(row, match):
    with pytest.raises(DataError, match=match):
        to_examples([(row, "t:1")], "tokenized")


def test_tokenized_rows_follow_the_length_rules(smol_tokenizer):
    from tunesmith.data.examples import TokenizedExample
    from tunesmith.api.data_entry import tokenize_examples
    from tunesmith.data.tokenize import TokenizeSettings

    examples = [TokenizedExample([1, 2, 3, 4, 5], [-100, -100, 3, 4, 5], "t:1"), TokenizedExample([7, 8], None, "t:2")]
    rows, stats = tokenize_examples(smol_tokenizer, examples, "causal_lm",
                                    TokenizeSettings(max_length=4, truncation="truncate_end"))
    assert rows == [{"input_ids": [1, 2, 3, 4], "labels": [-100, -100, 3, 4]},
                    {"input_ids": [7, 8], "labels": [7, 8]}]
    assert stats.truncated_end == 1
