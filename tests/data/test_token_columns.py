"""Conversations tokenized straight into columns give exactly the table and the counts of
``tokenize_examples`` + ``rows_to_table``: every template, loss mode, length rule and
``data.rerendered_history``; other data still goes through the rows."""

from __future__ import annotations

import gc
import random

import datasets
import pytest

from tunesmith.data.examples import Conversation, Message, TextExample
from tunesmith.data.gc_pause import paused_gc
from tunesmith.data.templates import named_templates
from tunesmith.data.token_columns import conversations_to_table
from tunesmith.data.tokenize import TokenizeSettings, _Job, tokenize_examples
from tunesmith.data.tokenize_workers import rows_to_table, table_to_dataset, tokenize_table
from tunesmith.errors import DataError
from shared_templates import REASONING  # tests/data is on sys.path (its conftest)

WORDS = "the model answer question value table river four seven plus equals why because".split()
TRICKY = ["", " ", "\n", "  padded  ", "<|im_end|>", "stop<|im_end|>then", "Ünïcödé ✓ 数字 123", "\ue000"]


def text(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return rng.choice(TRICKY)
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 15)))


def conversations(n: int, seed: int = 0, thinking: bool = False) -> list[Conversation]:
    """User-first conversations of 1-4 answers (some with train flags), lengths spread around the
    limits the tests set, so some rows are dropped and some cut."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        messages = [Message("system", text(rng))] if rng.random() < 0.3 else []
        for _ in range(rng.randint(1, 4)):
            answer = text(rng)
            if thinking and rng.random() < 0.5:
                answer = f"<think>{text(rng)}</think>\n{answer}"
            messages += [Message("user", text(rng)),
                         Message("assistant", answer, train=rng.choice([None, None, None, True, False]))]
        out.append(Conversation(messages, where=f"chat.jsonl:{i + 1}"))
    return out


def both_ways(tokenizer, examples, settings):
    rows, stats = tokenize_examples(tokenizer, examples, "causal_lm", settings, progress=False)
    made = conversations_to_table(tokenizer, examples, "causal_lm", settings, progress=False)
    assert made is not None
    return rows, stats, made


def check_same(rows, stats, made):
    table, columns_stats = made
    assert table.equals(rows_to_table(rows)) and columns_stats == stats
    if rows:
        assert table_to_dataset(table).to_list() == rows
        assert table_to_dataset(table).features == datasets.Dataset.from_list(rows).features


@pytest.mark.parametrize("template", [None, "tags"] + named_templates())  # None: the tokenizer's own
@pytest.mark.parametrize("loss_on", ["all", "assistant", "last_assistant"])
def test_every_template_and_loss_mode_gives_the_rows_of_tokenize_examples(smol_tokenizer, template, loss_on):
    settings = TokenizeSettings(loss_on=loss_on, max_length=90, template=template)
    rows, stats, made = both_ways(smol_tokenizer, conversations(150), settings)
    assert stats.kept >= 10 and stats.dropped >= 3  # both kinds of row are exercised
    check_same(rows, stats, made)


@pytest.mark.parametrize("truncation", ["drop", "truncate_end", "truncate_prompt"])
@pytest.mark.parametrize("min_length", [0, 40])
def test_length_rules_cut_and_drop_the_same_rows_with_the_same_notes(smol_tokenizer, truncation, min_length):
    settings = TokenizeSettings(max_length=70, truncation=truncation, min_length=min_length)
    rows, stats, made = both_ways(smol_tokenizer, conversations(200, seed=1), settings)
    assert stats.dropped + stats.truncated > 10 and stats.examples_dropped
    check_same(rows, stats, made)


@pytest.mark.parametrize("mode", ["per_turn", "last_turn"])
def test_rerendered_history_gives_the_same_examples(smol_tokenizer, tmp_path, mode):
    path = tmp_path / "reasoning.jinja"
    path.write_text(REASONING, encoding="utf-8")
    examples = conversations(120, seed=2, thinking=True)
    for c in examples[:5]:  # per_turn: a conversation with no trained answer gives no example
        for m in c.messages:
            m.train = False if m.role == "assistant" else None
    settings = TokenizeSettings(max_length=150, template=str(path), rerendered_history=mode)
    rows, stats, made = both_ways(smol_tokenizer, examples, settings)
    assert stats.dropped_no_trained_token >= 5
    check_same(rows, stats, made)
    with pytest.raises(DataError, match="growing prefix"):  # and "error" still refuses them, the same way
        conversations_to_table(smol_tokenizer, examples, "causal_lm",
                               TokenizeSettings(template=str(path)), progress=False)


def test_nothing_kept_gives_a_table_with_no_columns(smol_tokenizer):
    settings = TokenizeSettings(max_length=3)
    rows, stats, made = both_ways(smol_tokenizer, conversations(10), settings)
    assert rows == [] and made[0].num_columns == 0 and made[1] == stats and stats.dropped_too_long == 10


def test_other_data_goes_through_the_rows(smol_tokenizer):
    mixed = conversations(5) + [TextExample("plain text", where="t.jsonl:1")]
    settings = TokenizeSettings(max_length=200)
    assert conversations_to_table(smol_tokenizer, mixed, "causal_lm", settings) is None
    assert conversations_to_table(smol_tokenizer, conversations(5), "seq2seq", settings) is None
    rows, stats = tokenize_examples(smol_tokenizer, mixed, "causal_lm", settings, progress=False)
    table, table_stats = tokenize_table(smol_tokenizer, mixed, "causal_lm", settings, progress=False)
    assert table_to_dataset(table).to_list() == rows and table_stats == stats and len(rows) == 6


def test_a_repeated_text_is_tokenized_once_with_the_ids_of_each(smol_tokenizer):
    job = _Job(smol_tokenizer, TokenizeSettings(), "causal_lm", None)
    texts = ["\n", "hello there", "\n", "<|im_end|>\n", "hello there", ""]
    expected = [smol_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert job.encode(texts) == expected


def test_paused_gc_restores_the_collector_as_it_was():
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with paused_gc():
            assert not gc.isenabled()
            raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # a caller that had switched it off keeps it off
    finally:
        gc.enable()
