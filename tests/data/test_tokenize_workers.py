"""data.num_proc: worker processes give exactly the rows and counts of one process."""

from __future__ import annotations

import datasets
import pytest

from tunesmith.config import load_config
from tunesmith.data.examples import ClassificationExample, Conversation, Message
from tunesmith.api.data_entry import tokenize_examples
from tunesmith.data.tokenize import TokenizeSettings
from tunesmith.data.tokenize_workers import table_to_dataset, tokenize_to_table
from tunesmith.errors import ConfigError, DataError


def conversations(n: int) -> list[Conversation]:
    out = []
    for i in range(n):
        turns = [Message("user", f"question {i} " + "word " * (i % 40)), Message("assistant", f"answer {i}")]
        out.append(Conversation(turns * (1 + i % 3), where=f"chat.jsonl:{i + 1}"))
    return out


@pytest.mark.parametrize("truncation", ["drop", "truncate_end"])
def test_two_processes_give_the_rows_and_counts_of_one(smol_tokenizer, truncation):
    examples = conversations(120)
    settings = TokenizeSettings(max_length=60, truncation=truncation)
    rows, stats = tokenize_examples(smol_tokenizer, examples, "causal_lm", settings, progress=False)
    assert stats.dropped + stats.truncated > 0  # the notes must merge in order
    for num_proc in (1, 2, 3):
        table, merged = tokenize_to_table(smol_tokenizer, examples, "causal_lm", settings, num_proc)
        dataset = table_to_dataset(table)
        assert dataset.to_list() == rows
        assert dataset.features == datasets.Dataset.from_list(rows).features  # list<int64>, as before
        assert merged == stats


def test_classification_rows_through_workers(tmp_path):
    from tunesmith.models.loading import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    examples = [ClassificationExample(f"text number {i}", i % 2, where=f"c.csv:{i + 2}") for i in range(30)]
    settings = TokenizeSettings(max_length=16)
    rows, stats = tokenize_examples(tok, examples, "sequence_classification", settings, progress=False)
    table, merged = tokenize_to_table(tok, examples, "sequence_classification", settings, num_proc=2)
    assert table_to_dataset(table).to_list() == rows and merged == stats
    assert table_to_dataset(table).features == datasets.Dataset.from_list(rows).features  # int8 masks, as before


def test_an_error_in_a_worker_stops_the_job_with_its_file_and_line(smol_tokenizer):
    examples = conversations(40)
    examples[33] = Conversation([Message("user", "no answer here")], where="chat.jsonl:34")
    with pytest.raises(DataError, match="chat.jsonl:34: no assistant message"):
        tokenize_to_table(smol_tokenizer, examples, "causal_lm", TokenizeSettings(), num_proc=2)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_num_proc_must_be_a_positive_count(value):
    with pytest.raises(ConfigError, match=f"data.num_proc: {value} is not allowed"):
        load_config(overrides=[f"data.num_proc={value}"])


def test_num_proc_with_a_custom_preprocessor_says_it_is_not_used(smol_tokenizer, tmp_path, caplog):
    import json

    from tunesmith.api.data_entry import build_datasets
    from tunesmith.data.preprocessor import ChatTemplatePreprocessor

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi", "output": "hi"}) + "\n")
    with caplog.at_level("WARNING"):
        bundle = build_datasets({"train": str(data), "num_proc": 2}, smol_tokenizer,
                                preprocessor=ChatTemplatePreprocessor())
    assert len(bundle.train) == 1
    assert "data.num_proc=2 is not used: a custom preprocessor" in caplog.text
