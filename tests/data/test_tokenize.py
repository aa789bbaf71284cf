"""Tokenizing every example kind, masking, length limits and their counts.

Causal-LM cases use the packaged SmolLM2 tokenizer (chatml; EOS 2 = ``<|im_end|>``, no BOS added);
classification uses the packaged MiniLM (BERT) tokenizer ([CLS] 101, [SEP] 102).
"""

from __future__ import annotations

import copy

import pytest

from tunesmith.config.schema import DataConfig
from tunesmith.data.examples import ClassificationExample, Conversation, Message, Seq2SeqExample, TextExample
from tunesmith.api.data_entry import to_examples
from tunesmith.api.choices.data import resolve_template
from tunesmith.api.data_entry import tokenize_examples
from tunesmith.api.data_entry import tokenize_settings as TokenizeSettings
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_conversation, tokenize_text
from tunesmith.data.truncation import fit_to_length
from tunesmith.errors import ConfigError, DataError

M = IGNORE_INDEX
# "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n" | "4<|im_end|>" | "\n" under chatml.
PROMPT_2P2 = [1, 4093, 198, 34, 27, 34, 47, 2, 198, 1, 520, 9531, 198]
ANSWER_4 = [36, 2]


@pytest.fixture(scope="module")
def bert():
    from tunesmith.models.loading import load_tokenizer

    return load_tokenizer("minilm-l6")


@pytest.fixture(scope="module")
def bos_tokenizer(smol_tokenizer):
    tok = copy.deepcopy(smol_tokenizer)
    tok.add_bos_token = True  # like Llama 2: BOS before plain text
    return tok


def settings(**kw):
    return TokenizeSettings(**{"template": "chatml", **kw})


def chat(question="2+2?", answer="4", where="t:1", train=None):
    return Conversation([Message("user", question), Message("assistant", answer, train)], where=where)


# --- fit_to_length: the rules on plain lists -----------------------------------------------------


@pytest.mark.parametrize("truncation, keep_first, ids, labels, outcome", [
    ("drop", 0, [1, 2, 3, 4, 5], [M, M, M, 4, 5], "too_long"),
    ("truncate_end", 0, [1, 2, 3], [M, M, M], "truncated_end"),
    ("truncate_prompt", 0, [3, 4, 5], [M, 4, 5], "truncated_prompt"),
    ("truncate_prompt", 1, [1, 4, 5], [M, 4, 5], "truncated_prompt"),
])
def test_fit_to_length(truncation, keep_first, ids, labels, outcome):
    fitted = fit_to_length([1, 2, 3, 4, 5], [M, M, M, 4, 5], 3, truncation, keep_first)
    assert (fitted.input_ids, fitted.labels, fitted.outcome) == (ids, labels, outcome)


def test_fit_to_length_never_cuts_a_trained_token():
    assert fit_to_length([1, 2, 3, 4], [M, 2, 3, 4], 2, "truncate_prompt").outcome == "too_long"
    assert fit_to_length([1, 2, 3], [M, M, 3], 3, "drop").outcome == "fits"


# --- causal LM ---------------------------------------------------------------------------------


def test_conversation_golden(smol_tokenizer):
    rows, stats = tokenize_examples(smol_tokenizer, [chat()], "causal_lm", settings())
    assert rows == [{"input_ids": PROMPT_2P2 + ANSWER_4 + [198], "labels": [M] * 13 + ANSWER_4 + [M]}]
    assert (stats.kept, stats.tokens, stats.trained_tokens, stats.longest) == (1, 16, 2, 16)


def test_text_example_trains_every_token_and_eos(smol_tokenizer, bos_tokenizer):
    example = TextExample("Once upon a time", where="t:1")
    rows, stats = tokenize_examples(smol_tokenizer, [example], "auto", settings())
    assert rows == [{"input_ids": [6403, 1980, 253, 655, 2], "labels": [6403, 1980, 253, 655, 2]}]
    assert stats.trained_tokens == 5
    # BOS (id 1) when the tokenizer adds one; nothing predicts it, so it is not trained.
    assert tokenize_text(bos_tokenizer, example) == {"input_ids": [1, 6403, 1980, 253, 655, 2],
                                                     "labels": [M, 6403, 1980, 253, 655, 2]}


def test_seq2seq_examples_train_a_causal_lm_as_question_and_answer(smol_tokenizer):
    rows, _ = tokenize_examples(smol_tokenizer, [Seq2SeqExample("2+2?", "4", where="t:1")], "causal_lm", settings())
    assert rows == [tokenize_conversation(smol_tokenizer, chat(), "assistant",
                                          resolve_template(smol_tokenizer, settings()))]


def test_data_config_works_as_settings(smol_tokenizer):
    cfg = DataConfig(template="plain", loss_on="all", max_length=64)
    rows, _ = tokenize_examples(smol_tokenizer, [chat()], "causal_lm", cfg)
    assert rows == [{"input_ids": [34, 27, 34, 47, 198, 36, 2, 198], "labels": [34, 27, 34, 47, 198, 36, 2, 198]}]


# --- lengths: drop / truncate_end / truncate_prompt / min_length ---------------------------------

LONG_Q = "word " * 6  # "<|im_start|>user\nword word ... <|im_end|>\n<|im_start|>assistant\n" is 16 tokens
LONG_PROMPT = [1, 4093, 198, 3002, 2229, 2229, 2229, 2229, 2229, 216, 2, 198, 1, 520, 9531, 198]


def test_drop_counts_too_long(smol_tokenizer):
    rows, stats = tokenize_examples(smol_tokenizer, [chat(LONG_Q), chat()], "causal_lm", settings(max_length=16))
    assert len(rows) == 1 and stats.dropped_too_long == 1 and stats.truncated == 0
    assert stats.examples_dropped == ["t:1 (19 tokens > data.max_length=16; data.truncation=drop)"]


def test_truncate_end_cuts_the_end_or_drops_when_nothing_trained_is_left(smol_tokenizer):
    rows, stats = tokenize_examples(smol_tokenizer, [chat(LONG_Q)], "causal_lm",
                                    settings(max_length=17, truncation="truncate_end"))
    assert rows == [{"input_ids": LONG_PROMPT + [36], "labels": [M] * 16 + [36]}]
    assert stats.truncated_end == 1 and stats.examples_truncated == ["t:1 (19 -> 17 tokens)"]
    rows, stats = tokenize_examples(smol_tokenizer, [chat(LONG_Q)], "causal_lm",
                                    settings(max_length=16, truncation="truncate_end"))
    assert rows == [] and stats.dropped_too_long == 1 and "no trained token left" in stats.examples_dropped[0]


def test_truncate_prompt_cuts_the_earliest_prompt_tokens(smol_tokenizer):
    rows, stats = tokenize_examples(smol_tokenizer, [chat(LONG_Q)], "causal_lm",
                                    settings(max_length=12, truncation="truncate_prompt"))
    full = LONG_PROMPT + ANSWER_4 + [198]
    assert rows == [{"input_ids": full[7:], "labels": [M] * 9 + ANSWER_4 + [M]}]
    assert stats.truncated_prompt == 1 and stats.truncated == 1 and stats.kept == 1


def test_truncate_prompt_drops_when_the_answer_alone_does_not_fit(smol_tokenizer):
    long_answer = chat("Hi", "yes " * 20)
    rows, stats = tokenize_examples(smol_tokenizer, [long_answer], "causal_lm",
                                    settings(max_length=12, truncation="truncate_prompt"))
    assert rows == [] and stats.dropped_too_long == 1 and stats.truncated == 0
    assert "the answer alone does not fit" in stats.examples_dropped[0]


def test_truncate_prompt_keeps_a_leading_bos(bos_tokenizer):
    conv = chat(LONG_Q)
    full = tokenize_examples(bos_tokenizer, [conv], "causal_lm", settings(template="tags", max_length=99))[0][0]
    assert full["input_ids"][0] == bos_tokenizer.bos_token_id
    rows, _ = tokenize_examples(bos_tokenizer, [conv], "causal_lm",
                                settings(template="tags", max_length=len(full["input_ids"]) - 3,
                                         truncation="truncate_prompt"))
    assert rows[0]["input_ids"] == full["input_ids"][:1] + full["input_ids"][4:]
    assert rows[0]["labels"] == full["labels"][:1] + full["labels"][4:]


def test_min_length_and_untrainable_examples_are_counted(smol_tokenizer):
    examples = [chat(), chat(LONG_Q, where="t:2"), chat(train=False, where="t:3")]
    rows, stats = tokenize_examples(smol_tokenizer, examples, "causal_lm", settings(min_length=17))
    assert len(rows) == 1 and stats.kept == 1
    assert (stats.dropped_too_short, stats.dropped_no_trained_token, stats.dropped) == (1, 1, 2)
    assert stats.examples_dropped == ["t:1 (16 tokens < data.min_length=17)",
                                      "t:3 (no trained token under data.loss_on=assistant)"]
    assert stats.summary() == ("1 examples, 19 tokens (2 trained), longest 19; dropped 0 too long, 1 too short, "
                               "1 with no trained token; truncated 0 (0 at the end, 0 in the prompt)")


# --- sequence classification -------------------------------------------------------------------


def test_classification_and_pairs_golden(bert):
    rows = [({"text": "Loved it", "label": "pos"}, "f:1"), ({"text": "Meh", "label": "neg"}, "f:2")]
    examples, info = to_examples(rows)
    out, stats = tokenize_examples(bert, examples, "auto", settings(template="auto"))
    assert out[0] == {"input_ids": [101, 3866, 2009, 102], "token_type_ids": [0, 0, 0, 0],
                      "attention_mask": [1, 1, 1, 1], "labels": 1}
    assert out[1]["labels"] == 0 and info.label_names == ["neg", "pos"]
    pair = ClassificationExample("Loved it", 2, text_pair="Great film", where="f:3")
    (row,), _ = tokenize_examples(bert, [pair], "sequence_classification", TokenizeSettings())
    assert row == {"input_ids": [101, 3866, 2009, 102, 2307, 2143, 102], "token_type_ids": [0, 0, 0, 0, 1, 1, 1],
                   "attention_mask": [1] * 7, "labels": 2}


def test_classification_truncates_the_end_and_counts_it(bert):
    text = ClassificationExample("one two three four five six seven eight nine ten", 1, where="f:1")
    (row,), stats = tokenize_examples(bert, [text], "sequence_classification", TokenizeSettings(max_length=6))
    assert row["input_ids"] == [101, 2028, 2048, 2093, 2176, 102] and row["labels"] == 1
    assert stats.truncated_end == 1 and stats.examples_truncated == ["f:1 (12 -> 6 tokens)"]
    rows, stats = tokenize_examples(bert, [text], "sequence_classification", TokenizeSettings(min_length=13))
    assert rows == [] and stats.dropped_too_short == 1


# --- seq2seq -----------------------------------------------------------------------------------


def test_seq2seq_golden(smol_tokenizer):
    (row,), stats = tokenize_examples(smol_tokenizer, [Seq2SeqExample("Hallo Welt", "Hello world")], "seq2seq",
                                      TokenizeSettings())
    assert row == {"input_ids": [36549, 95, 408, 2781], "attention_mask": [1, 1, 1, 1], "labels": [19556, 905, 2]}
    assert stats.trained_tokens == 3


def test_conversation_as_seq2seq_is_prompt_text_to_last_answer(smol_tokenizer):
    conv = Conversation([Message("system", "Hallo"), Message("user", "Welt"), Message("assistant", "Hello world")])
    (row,), _ = tokenize_examples(smol_tokenizer, [conv], "seq2seq", TokenizeSettings())
    assert smol_tokenizer.decode(row["input_ids"]) == "Hallo\n\nWelt"
    assert row["labels"] == [19556, 905, 2]


@pytest.mark.parametrize("truncation, source, outcome", [
    ("drop", None, "dropped_too_long"),
    ("truncate_end", [36549, 95], "truncated_end"),
    ("truncate_prompt", [408, 2781], "truncated_prompt"),
])
def test_seq2seq_source_length(smol_tokenizer, truncation, source, outcome):
    rows, stats = tokenize_examples(smol_tokenizer, [Seq2SeqExample("Hallo Welt", "Hi")], "seq2seq",
                                    TokenizeSettings(max_length=2, truncation=truncation))
    assert getattr(stats, outcome) == 1
    assert [r["input_ids"] for r in rows] == ([source] if source else [])


def test_seq2seq_target_is_cut_only_by_truncate_end(smol_tokenizer):
    example = Seq2SeqExample("Hi", "Hello world")
    rows, stats = tokenize_examples(smol_tokenizer, [example], "seq2seq",
                                    TokenizeSettings(max_length=2, truncation="truncate_end"))
    assert rows[0]["labels"] == [19556, 905] and stats.truncated_end == 1
    rows, stats = tokenize_examples(smol_tokenizer, [example], "seq2seq",
                                    TokenizeSettings(max_length=2, truncation="truncate_prompt"))
    assert rows == [] and stats.dropped_too_long == 1


# --- errors ------------------------------------------------------------------------------------


def test_task_and_example_kind_must_match(smol_tokenizer):
    with pytest.raises(DataError, match="f:9: model.task=causal_lm cannot train on classification examples"):
        tokenize_examples(smol_tokenizer, [ClassificationExample("a", 0, where="f:9")], "causal_lm")
    with pytest.raises(DataError, match="model.task=seq2seq cannot train on text examples"):
        tokenize_examples(smol_tokenizer, [TextExample("a")], "seq2seq")
    with pytest.raises(DataError, match="sequence_classification cannot train on conversation"):
        tokenize_examples(smol_tokenizer, [chat()], "sequence_classification")
    with pytest.raises(ConfigError, match="model.task: 'lm'"):
        tokenize_examples(smol_tokenizer, [chat()], "lm")


@pytest.mark.parametrize("kw, key", [
    ({"loss_on": "answers"}, "data.loss_on"), ({"truncation": "cut"}, "data.truncation"),
    ({"max_length": 0}, "data.max_length"), ({"min_length": 600}, "data.min_length"),
    ({"template": "chatlm"}, "data.template"),
])
def test_bad_settings_name_the_key(kw, key):
    with pytest.raises(ConfigError, match=key):
        TokenizeSettings(**kw)


def test_no_examples():
    rows, stats = tokenize_examples(None, [], "causal_lm")
    assert rows == [] and stats.kept == 0
