"""Golden checks of rendering, masking and EOS with the packaged SmolLM2 tokenizer (chatml)."""

import pytest

from tunesmith.data.collators import PaddingCollator
from tunesmith.data.examples import Conversation, Message
from tunesmith.data.templates import render_prompt, render_segments
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_all, tokenize_conversation


def conv(*turns, train_flags=None):
    roles = ["user", "assistant"] * len(turns)
    flags = train_flags or [None] * len(turns)
    return Conversation([Message(r, t, f) for r, t, f in zip(roles, turns, flags)], where="t:1")


def trained_text(tok, example):
    return tok.decode([t for t in example["labels"] if t != IGNORE_INDEX])


def test_segments_train_answer_and_eos_only(smol_tokenizer):
    segments = render_segments(smol_tokenizer, conv("2+2?", "4"), "assistant")
    assert [s for s in segments if s[1]] == [("4<|im_end|>", True)]
    assert segments[-1] == ("\n", False)
    assert "".join(s for s, _ in segments) == smol_tokenizer.apply_chat_template(
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], tokenize=False)


def test_labels_are_unshifted_and_mask_the_prompt(smol_tokenizer):
    ex = tokenize_conversation(smol_tokenizer, conv("What is 3 + 4?", "3 + 4 = 7\n#### 7"), "assistant")
    assert len(ex["input_ids"]) == len(ex["labels"])
    assert trained_text(smol_tokenizer, ex) == "3 + 4 = 7\n#### 7<|im_end|>"
    assert ex["labels"][-1] == IGNORE_INDEX  # the newline after EOS is not trained
    assert ex["labels"][-2] == smol_tokenizer.eos_token_id  # EOS is trained
    first = next(i for i, t in enumerate(ex["labels"]) if t != IGNORE_INDEX)
    assert smol_tokenizer.decode(ex["input_ids"][:first]).endswith("<|im_start|>assistant\n")
    for i, t in enumerate(ex["labels"]):
        assert t == IGNORE_INDEX or t == ex["input_ids"][i]


def test_loss_on_modes(smol_tokenizer):
    c = conv("Hi", "Hello", "Add 1 and 2", "3")
    every = tokenize_conversation(smol_tokenizer, c, "all")
    assert all(t != IGNORE_INDEX for t in every["labels"])
    both = tokenize_conversation(smol_tokenizer, c, "assistant")
    assert trained_text(smol_tokenizer, both) == "Hello<|im_end|>3<|im_end|>"
    last = tokenize_conversation(smol_tokenizer, c, "last_assistant")
    assert trained_text(smol_tokenizer, last) == "3<|im_end|>"


def test_per_message_train_flag_overrides_loss_on(smol_tokenizer):
    c = conv("Hi", "Hello", "Add 1 and 2", "3", train_flags=[None, False, None, None])
    assert trained_text(smol_tokenizer, tokenize_conversation(smol_tokenizer, c, "assistant")) == "3<|im_end|>"


def test_prompt_rendering_matches_training_prefix(smol_tokenizer):
    c = conv("What is 3 + 4?", "7")
    prompt = render_prompt(smol_tokenizer, c.prompt_messages())
    full = "".join(s for s, _ in render_segments(smol_tokenizer, c, "assistant"))
    assert full.startswith(prompt) and full[len(prompt):].startswith("7")


def test_too_long_and_untrainable_examples_are_dropped_and_counted(smol_tokenizer):
    convs = [conv("short", "ok"), conv("long " * 200, "ok"), conv("q", "a", train_flags=[None, False])]
    rows, stats = tokenize_all(smol_tokenizer, convs, "assistant", max_length=64)
    assert len(rows) == 1 and stats.kept == 1
    assert stats.dropped_too_long == 1 and stats.dropped_no_trained_token == 1
    assert any("t:1" in w for w in stats.examples_dropped)


def test_padding_collator_pads_right_with_masked_labels():
    batch = PaddingCollator(pad_token_id=0)([
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
        {"input_ids": [5], "labels": [5]},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [5, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    padded = PaddingCollator(pad_token_id=0, pad_to_multiple_of=4)([{"input_ids": [1], "labels": [1]}])
    assert padded["input_ids"].shape[1] == 4


def test_no_chat_template_renders_plain_text(smol_tokenizer):
    from copy import deepcopy

    tok = deepcopy(smol_tokenizer)
    tok.chat_template = None
    assert render_segments(tok, conv("a", "b"), "assistant") == [("a", False), ("\nb" + tok.eos_token, True),
                                                                 ("\n", False)]
