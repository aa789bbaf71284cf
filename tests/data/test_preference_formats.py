"""Preference, kto and prompt_only row formats: detection, parsing (TRL's shapes too) and bad rows."""

from __future__ import annotations

import pytest

from tunesmith.data.bad_rows import BadRowPolicy
from tunesmith.data.examples import Message, PreferenceExample, PromptExample, UnpairedPreferenceExample
from tunesmith.api.data_entry import prepare_parser, to_examples
from tunesmith.data.formats import detect_format
from tunesmith.errors import DataError

U, A = "user", "assistant"


def msgs(*turns):
    return [{"role": role, "content": text} for role, text in turns]


def parse(row, fmt="auto", columns=None):
    examples, info = to_examples([(row, "d.jsonl:3")], fmt, columns)
    return examples[0], info


@pytest.mark.parametrize("columns, expected", [
    (["prompt", "chosen", "rejected"], "preference"),
    (["chosen", "rejected"], "preference"),
    (["chosen", "rejected", "messages", "text"], "preference"),
    (["prompt", "completion", "label"], "kto"),
    (["prompt", "completion"], "prompt_completion"),
    (["prompt"], "prompt_only"),
    (["prompt", "answer"], "prompt_only"),
    (["prompt", "messages"], "messages"),
    (["question", "answer"], "qa"),
    (["text", "label"], "classification"),
])
def test_detection(columns, expected):
    assert detect_format({c: "x" for c in columns}, "f:1") == expected


def test_preference_text_columns():
    example, info = parse({"prompt": "2+2?", "chosen": "4", "rejected": "5", "answer": 4, "system": "Be brief."})
    assert info.format == "preference" and info.kind == "preference" and info.detected
    assert example == PreferenceExample([Message("system", "Be brief."), Message(U, "2+2?")], [Message(A, "4")],
                                        [Message(A, "5")], reference="4", where="d.jsonl:3")


def test_preference_trl_conversational_and_implicit_prompt_agree():
    explicit, _ = parse({"prompt": msgs((U, "2+2?")), "chosen": msgs((A, "4")), "rejected": msgs((A, "5"))})
    implicit, _ = parse({"chosen": msgs((U, "2+2?"), (A, "4")), "rejected": msgs((U, "2+2?"), (A, "5"))})
    assert explicit == implicit
    assert implicit.prompt == [Message(U, "2+2?")] and implicit.chosen == [Message(A, "4")]


def test_implicit_prompt_with_shared_history():
    example, _ = parse({"chosen": msgs((U, "a"), (A, "b"), (U, "c"), (A, "d")),
                        "rejected": msgs((U, "a"), (A, "b"), (U, "c"), (A, "e"))})
    assert [m.content for m in example.prompt] == ["a", "b", "c"]
    assert example.rejected == [Message(A, "e")]


def test_columns_rename_and_reference_column():
    example, info = parse({"q": "2+2?", "good": "4", "bad": "5", "reference": "4"},
                          columns={"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert info.format == "preference" and example.reference == "4" and example.rejected == [Message(A, "5")]


@pytest.mark.parametrize("label, desirable", [(True, True), (False, False), (1, True), (0, False),
                                              ("true", True), ("False", False), ("1", True)])
def test_kto_labels(label, desirable):
    example, info = parse({"prompt": "2+2?", "completion": "4", "label": label})
    assert info.format == "kto" and info.kind == "unpaired_preference"
    assert example == UnpairedPreferenceExample([Message(U, "2+2?")], [Message(A, "4")], desirable,
                                                where="d.jsonl:3")


def test_kto_conversational():
    example, _ = parse({"prompt": msgs((U, "2+2?")), "completion": msgs((A, "5")), "label": False})
    assert example.completion == [Message(A, "5")] and example.desirable is False


def test_prompt_only():
    example, info = parse({"prompt": "2+2?", "solution": 4})
    assert info.format == "prompt_only" and info.kind == "prompt"
    assert example == PromptExample([Message(U, "2+2?")], reference="4", where="d.jsonl:3")
    example, _ = parse({"prompt": msgs(("system", "Be brief."), (U, "2+2?"))})
    assert [m.role for m in example.prompt] == ["system", U] and example.reference is None


@pytest.mark.parametrize("row, fmt, expected", [
    ({"prompt": "2+2?", "chosen": "4"}, "preference", "d.jsonl:3: missing column 'rejected'"),
    ({"prompt": "2+2?", "chosen": "", "rejected": "5"}, "auto", "d.jsonl:3: column 'chosen' is empty"),
    ({"prompt": "2+2?", "chosen": "4", "rejected": None}, "auto", "d.jsonl:3: column 'rejected' is null"),
    ({"prompt": "2+2?", "chosen": [], "rejected": "5"}, "auto", "d.jsonl:3: column 'chosen' must be a non-empty list"),
    ({"prompt": "2+2?", "chosen": "4", "rejected": "4"}, "auto",
     "d.jsonl:3: chosen and rejected are the same text; a pair must differ"),
    ({"chosen": msgs((U, "a"), (A, "b")), "rejected": msgs((U, "a"), (A, "b"))}, "auto",
     "d.jsonl:3: chosen and rejected are the same text; a pair must differ"),
    ({"chosen": msgs((U, "a"), (A, "b")), "rejected": msgs((U, "x"), (A, "c"))}, "auto",
     "d.jsonl:3: chosen and rejected share no leading turns"),
    ({"chosen": msgs((U, "a")), "rejected": msgs((U, "a"), (A, "c"))}, "auto",
     "d.jsonl:3: chosen is the shared prompt alone"),
    ({"chosen": "4", "rejected": "5"}, "auto", "d.jsonl:3: a preference row without a 'prompt' column"),
    ({"prompt": "2+2?", "chosen": {"text": "4"}, "rejected": "5"}, "auto",
     "d.jsonl:3: column 'chosen' must be text or a list of {role, content} messages"),
    ({"prompt": "2+2?", "chosen": 4.5j, "rejected": "5"}, "auto", "d.jsonl:3: column 'chosen' must be text"),
    ({"prompt": msgs((U, "a")), "chosen": msgs((U, "b")), "rejected": msgs((A, "c"))}, "auto",
     "d.jsonl:3: prompt + chosen[1] is a second 'user' turn"),
    ({"prompt": "2+2?", "completion": "4", "label": "maybe"}, "auto",
     "d.jsonl:3: column 'label' must say whether the completion is desirable"),
    ({"prompt": "2+2?", "completion": "4", "label": 2}, "kto", "got 2"),
    ({"prompt": msgs((U, "a"), (A, "b"))}, "prompt_only", "d.jsonl:3: prompt[1] is a 'assistant' turn"),
])
def test_bad_rows_name_file_line_and_field(row, fmt, expected):
    with pytest.raises(DataError) as err:
        to_examples([(row, "d.jsonl:3")], fmt)
    assert expected in str(err.value)


def test_bad_pairs_are_skipped_and_counted_by_reason():
    rows = [({"prompt": "q", "chosen": "a", "rejected": "b"}, "d:1"),
            ({"prompt": "q", "chosen": "a", "rejected": "a"}, "d:2"),
            ({"prompt": "q", "chosen": "a"}, "d:3"),
            ({"prompt": "q", "chosen": "c", "rejected": "d"}, "d:4")]
    parse_row, info = prepare_parser(rows, strict=False)
    examples, report = BadRowPolicy("skip", max_bad_fraction=0.6).parse_all(rows, parse_row)
    assert [e.where for e in examples] == ["d:1", "d:4"] and info.format == "preference"
    assert dict(report.counts) == {"identical pair": 1, "missing column": 1}
