"""Tokenizing preference, unpaired and prompt examples; their collators, cache and inspect views.

The packaged SmolLM2 tokenizer under chatml (EOS 2 = ``<|im_end|>``, no BOS added).
"""

from __future__ import annotations

import copy
import json

import pytest

from tunesmith.data.examples import (
    Conversation,
    Message,
    PreferenceExample,
    PromptExample,
    UnpairedPreferenceExample,
    example_from_dict,
    example_to_dict,
)
from tunesmith.api.data_entry import tokenize_examples
from tunesmith.data.tokenize import IGNORE_INDEX, TokenizeSettings
from tunesmith.data.tokenize_workers import rows_to_table, table_to_dataset, tokenize_to_table
from tunesmith.errors import ConfigError

M = IGNORE_INDEX
# "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n" | "4<|im_end|>" | "\n" under chatml.
PROMPT_2P2 = [1, 4093, 198, 34, 27, 34, 47, 2, 198, 1, 520, 9531, 198]
ANSWER_4, ANSWER_5, NEWLINE = [36, 2], [37, 2], [198]


def settings(**kw):
    return TokenizeSettings(**{"template": "chatml", **kw})


def pair(chosen="4", rejected="5", question="2+2?", where="t:1", reference="4"):
    return PreferenceExample([Message("user", question)], [Message("assistant", chosen)],
                             [Message("assistant", rejected)], reference, where)


def tokenize(tok, examples, task="causal_lm", **kw):
    return tokenize_examples(tok, examples, task, settings(**kw), progress=False)


def sft(tok, messages, **kw):
    rows, _ = tokenize(tok, [Conversation(messages, where="t:1")], **kw)
    return rows[0]


def test_pair_golden(smol_tokenizer):
    rows, stats = tokenize(smol_tokenizer, [pair()])
    assert rows == [{
        "chosen_input_ids": PROMPT_2P2 + ANSWER_4 + NEWLINE, "chosen_labels": [M] * 13 + ANSWER_4 + [M],
        "rejected_input_ids": PROMPT_2P2 + ANSWER_5 + NEWLINE, "rejected_labels": [M] * 13 + ANSWER_5 + [M]}]
    assert (stats.kept, stats.tokens, stats.trained_tokens, stats.longest) == (1, 32, 4, 16)


def test_each_side_is_what_sft_gives_for_prompt_plus_completion(smol_tokenizer):
    system = Message("system", "Be brief.")
    example = PreferenceExample([system, Message("user", "Hi"), Message("assistant", "Hello"),
                                 Message("user", "2+2?")], [Message("assistant", "It is 4.")],
                                [Message("assistant", "Five, I think.")], where="t:1")
    row = tokenize(smol_tokenizer, [example])[0][0]
    for side in ("chosen", "rejected"):
        messages = example.prompt + getattr(example, side)
        expected = sft(smol_tokenizer, messages, loss_on="last_assistant")
        assert row[f"{side}_input_ids"] == expected["input_ids"]
        assert row[f"{side}_labels"] == expected["labels"]  # earlier assistant turns of the prompt: -100


def test_reward_model_rows_are_the_full_conversations(smol_tokenizer):
    rows, _ = tokenize(smol_tokenizer, [pair()], task="sequence_classification")
    assert rows == [{"chosen_input_ids": PROMPT_2P2 + ANSWER_4 + NEWLINE,
                     "rejected_input_ids": PROMPT_2P2 + ANSWER_5 + NEWLINE}]


def test_unpaired_rows(smol_tokenizer):
    example = UnpairedPreferenceExample([Message("user", "2+2?")], [Message("assistant", "5")], False, where="t:1")
    rows, stats = tokenize(smol_tokenizer, [example])
    expected = sft(smol_tokenizer, [Message("user", "2+2?"), Message("assistant", "5")])
    assert rows == [{**expected, "desirable": 0}] and stats.kept == 1


def test_prompt_rows_are_what_inference_feeds_the_model(smol_tokenizer):
    from tunesmith.api.choices.data import resolve_template

    rows, stats = tokenize(smol_tokenizer, [PromptExample([Message("user", "2+2?")], "4", "t:1"),
                                            PromptExample([Message("user", "3+3?")], None, "t:2")])
    assert rows[0] == {"prompt_ids": PROMPT_2P2, "reference": "4"} and rows[1]["reference"] is None
    rendered = resolve_template(smol_tokenizer, settings()).render_prompt([Message("user", "2+2?")])
    assert smol_tokenizer([rendered], add_special_tokens=False)["input_ids"][0] == PROMPT_2P2  # as inference
    assert stats.trained_tokens == 0


def test_reward_task_refuses_prompt_rows(smol_tokenizer):
    from tunesmith.errors import DataError

    with pytest.raises(DataError, match="t:1: model.task=sequence_classification cannot train on prompt examples"):
        tokenize(smol_tokenizer, [PromptExample([Message("user", "2+2?")], "4", "t:1")],
                 task="sequence_classification")


# --- length rules --------------------------------------------------------------------------


def test_drop_drops_the_pair_when_either_side_is_too_long(smol_tokenizer):
    long_rejected = pair(rejected="five " * 10)
    rows, stats = tokenize(smol_tokenizer, [long_rejected, pair(where="t:2")], max_length=16)
    assert len(rows) == 1 and stats.dropped_too_long == 1 and stats.kept == 1
    assert stats.examples_dropped[0].startswith("t:1 (chosen 16, rejected")


def test_truncate_end_cuts_each_long_side(smol_tokenizer):
    rows, stats = tokenize(smol_tokenizer, [pair(rejected="five " * 10)], max_length=16, truncation="truncate_end")
    row = rows[0]
    assert row["chosen_input_ids"] == PROMPT_2P2 + ANSWER_4 + NEWLINE  # fits: untouched
    assert len(row["rejected_input_ids"]) == 16 and row["rejected_input_ids"][:13] == PROMPT_2P2
    assert stats.truncated_end == 1 and stats.kept == 1


def test_truncate_prompt_cuts_the_same_prompt_tokens_from_both_sides(smol_tokenizer):
    rows, stats = tokenize(smol_tokenizer, [pair(rejected="5 or 6")], max_length=15, truncation="truncate_prompt")
    row = rows[0]
    full = tokenize(smol_tokenizer, [pair(rejected="5 or 6")])[0][0]
    cut = len(full["rejected_input_ids"]) - 15
    assert len(row["rejected_input_ids"]) == 15
    assert row["chosen_input_ids"] == full["chosen_input_ids"][cut:]
    assert row["rejected_input_ids"] == full["rejected_input_ids"][cut:]
    assert row["rejected_labels"][-6:] == full["rejected_labels"][-6:]  # the completion is whole
    assert stats.truncated_prompt == 1


def test_truncate_prompt_drops_when_the_completions_alone_do_not_fit(smol_tokenizer):
    rows, stats = tokenize(smol_tokenizer, [pair(rejected="five " * 20)], max_length=16, truncation="truncate_prompt")
    assert rows == [] and stats.dropped_too_long == 1


def test_min_length_applies_to_each_side(smol_tokenizer):
    rows, stats = tokenize(smol_tokenizer, [pair()], min_length=17, max_length=64)
    assert rows == [] and stats.dropped_too_short == 1


def test_long_prompts_drop_or_lose_their_start(smol_tokenizer):
    example = PromptExample([Message("user", "2+2? " * 10)], "4", "t:1")
    rows, stats = tokenize(smol_tokenizer, [example], max_length=12)
    assert rows == [] and stats.dropped_too_long == 1
    full = tokenize(smol_tokenizer, [example])[0][0]["prompt_ids"]
    for truncation in ("truncate_prompt", "truncate_end"):
        rows, stats = tokenize(smol_tokenizer, [example], max_length=12, truncation=truncation)
        assert rows[0]["prompt_ids"] == full[-12:] and stats.truncated_prompt == 1  # the assistant header stays


def test_truncate_prompt_keeps_a_leading_bos(smol_tokenizer):
    tok = copy.deepcopy(smol_tokenizer)
    tok.add_bos_token = True
    rows, _ = tokenize(tok, [pair(rejected="5 or 6")], max_length=15, truncation="truncate_prompt")
    for side in ("chosen", "rejected"):
        assert rows[0][f"{side}_input_ids"][0] == tok.bos_token_id


# --- Arrow rows, processes and the cache ----------------------------------------------------


def test_arrow_tables_and_processes(smol_tokenizer):
    examples = [pair(where=f"t:{i}", reference=None if i % 2 else "4") for i in range(6)]
    prompts = [PromptExample([Message("user", f"{i}+1?")], None, f"p:{i}") for i in range(4)]
    for batch in (examples, prompts):
        one, stats_one = tokenize_to_table(smol_tokenizer, batch, "causal_lm", settings(), 1)
        two, stats_two = tokenize_to_table(smol_tokenizer, batch, "causal_lm", settings(), 2)
        assert one.to_pylist() == two.to_pylist() and stats_one == stats_two
    table = rows_to_table([{"prompt_ids": [1, 2], "reference": None}])
    assert str(table.schema.field("reference").type) == "string"  # all-None shards still join
    rows = [{"chosen_input_ids": [1, 2], "chosen_labels": [M, 2], "rejected_input_ids": [1, 3],
             "rejected_labels": [M, 3]}]
    assert table_to_dataset(rows_to_table(rows)).to_list() == rows


def test_examples_survive_the_cache():
    examples = [pair(),
                UnpairedPreferenceExample([Message("user", "q")], [Message("assistant", "a")], True, "x", "k:1"),
                PromptExample([Message("system", "s"), Message("user", "q")], None, "p:1")]
    assert [example_from_dict(json.loads(json.dumps(example_to_dict(e)))) for e in examples] == examples


def test_build_datasets_caches_preference_rows(smol_tokenizer, tmp_path, monkeypatch):
    from tunesmith.config import load_config
    from tunesmith.api.data_entry import build_datasets

    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+1?", "chosen": str(i + 1), "rejected": str(i + 2)}) + "\n"
                            for i in range(8)))
    cfg = load_config(overrides=[f"data.train={data}", "data.eval_split=0.25", "data.template=chatml"]).data
    first = build_datasets(cfg, smol_tokenizer, seed=0)
    second = build_datasets(cfg, smol_tokenizer, seed=0)
    assert any("loaded from the tokenized-data cache" in n for n in second.notes)
    assert second.train.to_list() == first.train.to_list() and second.held_out == first.held_out
    assert set(first.train.column_names) == {"chosen_input_ids", "chosen_labels", "rejected_input_ids",
                                             "rejected_labels"}
    with pytest.raises(ConfigError, match="data.packing: 'pack' cannot be used with preference data.*allowed: "
                                          "none, padding_free, auto"):
        build_datasets(load_config(overrides=[f"data.train={data}", "data.packing=pack"]).data, smol_tokenizer)


# --- collators ------------------------------------------------------------------------------


def test_pair_collator_order_with_padding():
    from tunesmith.data.collators import PaddingCollator
    from tunesmith.data.preference_collators import PairCollator, preference_collator

    rows = [{"chosen_input_ids": [5, 6], "chosen_labels": [M, 6], "rejected_input_ids": [5, 7, 8],
             "rejected_labels": [M, 7, 8]},
            {"chosen_input_ids": [9], "chosen_labels": [9], "rejected_input_ids": [9, 4], "rejected_labels": [M, 4]}]
    collate = preference_collator("preference", PaddingCollator(pad_token_id=0))
    assert isinstance(collate, PairCollator)
    batch = collate(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 0], [9, 0, 0], [5, 7, 8], [9, 4, 0]]
    assert batch["labels"].tolist() == [[M, 6, M], [9, M, M], [M, 7, 8], [M, 4, M]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]]
    assert int(batch["pairs"]) == 2


def test_pair_collator_padding_free_restarts_positions_per_sequence():
    from tunesmith.data.collators import PackedCollator
    from tunesmith.data.preference_collators import PairCollator

    rows = [{"chosen_input_ids": [5, 6], "chosen_labels": [M, 6], "rejected_input_ids": [5, 7, 8],
             "rejected_labels": [M, 7, 8]},
            {"chosen_input_ids": [9, 3], "chosen_labels": [M, 3], "rejected_input_ids": [9, 4],
             "rejected_labels": [M, 4]}]
    batch = PairCollator(PackedCollator(pad_token_id=0, sequence_boundaries=True))(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 9, 3, 5, 7, 8, 9, 4]]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1, 0, 1, 2, 0, 1]]
    assert batch["labels"].tolist() == [[M, 6, M, 3, M, 7, 8, M, 4]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 2, 4, 7, 9]


def test_reward_pairs_go_through_the_classification_collator():
    from tunesmith.data.collators import ClassificationCollator
    from tunesmith.data.preference_collators import PairCollator

    batch = PairCollator(ClassificationCollator(pad_token_id=0))(
        [{"chosen_input_ids": [5, 6], "rejected_input_ids": [5]}])
    assert batch["input_ids"].tolist() == [[5, 6], [5, 0]] and "labels" not in batch


def test_unpaired_and_prompt_collators():
    from tunesmith.data.collators import PaddingCollator
    from tunesmith.data.preference_collators import preference_collator

    batch = preference_collator("unpaired_preference", PaddingCollator(pad_token_id=0))(
        [{"input_ids": [5, 6], "labels": [M, 6], "desirable": 1}, {"input_ids": [7], "labels": [7], "desirable": 0}])
    assert batch["desirable"].tolist() == [True, False] and batch["input_ids"].tolist() == [[5, 6], [7, 0]]
    batch = preference_collator("prompt", PaddingCollator(pad_token_id=0))(
        [{"prompt_ids": [5, 6, 7], "reference": "4"}, {"prompt_ids": [8], "reference": None}])
    assert batch["prompt_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["prompt_attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]] and batch["references"] == ["4", None]
    inner = PaddingCollator(pad_token_id=0)
    assert preference_collator("conversation", inner) is inner


# --- data inspect ---------------------------------------------------------------------------


def test_show_example_of_each_row_kind(smol_tokenizer):
    from tunesmith.data.inspect import row_length, show_example

    row = tokenize(smol_tokenizer, [pair()])[0][0]
    assert show_example(smol_tokenizer, row, color=False) == (
        "chosen:\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n[[4<|im_end|>]]\n\n"
        "rejected:\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n[[5<|im_end|>]]\n")
    assert row_length(row) == 16
    reward = tokenize(smol_tokenizer, [pair()], task="sequence_classification")[0][0]
    assert "rejected:\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n5<|im_end|>\n" in \
        show_example(smol_tokenizer, reward, color=False)
    kto = tokenize(smol_tokenizer, [UnpairedPreferenceExample([Message("user", "2+2?")], [Message("assistant", "5")],
                                                              False, where="t:1")])[0][0]
    assert show_example(smol_tokenizer, kto, color=False).endswith("[[5<|im_end|>]]\n\ndesirable: no")
    prompt = tokenize(smol_tokenizer, [PromptExample([Message("user", "2+2?")], "4", "t:1")])[0][0]
    assert show_example(smol_tokenizer, prompt, color=False) == (
        "prompt:\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n\nreference: 4")
