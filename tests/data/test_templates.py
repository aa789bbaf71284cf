"""Golden tests of chat rendering and masking with the packaged SmolLM2 tokenizer (chatml, EOS
``<|im_end|>``, BOS ``<|im_start|>`` not added to plain text).

Expected ids are built independently of the production code: each template's text is written out
by hand below (``reference_pieces``), runs with the same trained flag are joined, and each run is
tokenized on its own. A few cases are also pinned as literal ids, so a change in rendering shows
even if the tokenizer's behaviour changed with it.
"""

from __future__ import annotations

import copy

import pytest

from tunesmith.config.schema import DataConfig, PromptTags
from tunesmith.data.examples import Conversation, Message
from tunesmith.api.data_entry import to_examples
from tunesmith.api.choices.data import resolve_template, template_names
from tunesmith.data.templates import render_prompt, render_segments
from tunesmith.api.data_entry import tokenize_examples
from tunesmith.api.data_entry import tokenize_settings as TokenizeSettings
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_conversation
from tunesmith.errors import ConfigError, DataError

EOS = "<|im_end|>"
SMOL_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
ALPACA_PREAMBLE = ("Below is an instruction that describes a task. Write a response that appropriately "
                   "completes the request.")
TEMPLATES = ["auto", "chatml", "llama3", "alpaca", "plain", "continuation", "tags"]
LOSS_MODES = ["all", "assistant", "last_assistant"]
M = IGNORE_INDEX

# One row per chat format (messages twice: with and without per-message train flags).
FORMAT_ROWS = {
    "messages": {"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}]},
    "messages+train": {"messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "train": False},
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4", "train": True}]},
    "sharegpt": {"conversations": [
        {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello there"},
        {"from": "human", "value": "Bye"}, {"from": "gpt", "value": "Bye!"}]},
    "alpaca": {"instruction": "Add 2 and 3.", "input": "", "output": "2 + 3 = 5"},
    "prompt_completion": {"prompt": "2+2=", "completion": "4"},
    "qa": {"context": "Tom has 2 apples.", "question": "How many apples?", "answer": "2"},
}


def reference_pieces(template: str, messages: list[Message]) -> list[tuple[str, int | None]]:
    """The rendered text as (piece, index of the answer it belongs to, or None for prompt text)."""
    pieces: list[tuple[str, int | None]] = []
    has_system = messages[0].role == "system"
    if template == "auto" and not has_system:  # SmolLM2's template adds its own system prompt
        pieces.append((f"<|im_start|>system\n{SMOL_SYSTEM}<|im_end|>\n", None))
    if template == "llama3":
        pieces.append(("<|im_start|>", None))  # this tokenizer's bos_token
    if template == "alpaca" and not has_system:
        pieces.append((ALPACA_PREAMBLE + "\n\n", None))
    for i, m in enumerate(messages):
        answer = m.role == "assistant"
        if template in ("auto", "chatml"):
            if answer:
                pieces += [("<|im_start|>assistant\n", None), (m.content + EOS, i), ("\n", None)]
            else:
                pieces.append((f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n", None))
        elif template == "llama3":
            head = f"<|start_header_id|>{m.role}<|end_header_id|>\n\n"
            if answer:  # <|eot_id|> is not this tokenizer's EOS, so EOS is appended and trained
                pieces += [(head, None), (m.content.strip() + "<|eot_id|>" + EOS, i)]
            else:
                pieces.append((head + m.content.strip() + "<|eot_id|>", None))
        elif template == "alpaca":
            if m.role == "system":
                pieces.append((m.content + "\n\n", None))
            elif m.role == "user":
                pieces.append(("### Instruction:\n" + m.content + "\n\n", None))
            else:
                pieces += [("### Response:\n", None), (m.content + EOS, i), ("\n\n", None)]
        elif template == "continuation":  # the prompt is the text itself; the answer starts with a newline
            if answer:
                pieces += [("\n" + m.content + EOS, i), ("\n", None)]
            else:
                pieces.append((m.content + ("\n\n" if m.role == "system" else ""), None))
        elif template == "plain":
            if answer:
                pieces += [(m.content + EOS, i), ("\n", None)]
            else:
                pieces.append((m.content + ("\n\n" if m.role == "system" else "\n"), None))
        else:  # tags, PromptTags() defaults
            if answer:
                pieces += [("### Assistant:\n", None), (m.content + EOS, i)]
            else:
                pieces.append(((m.content + "\n\n") if m.role == "system" else f"### User:\n{m.content}\n\n", None))
    return pieces


def expected(tok, template: str, messages: list[Message], loss_on: str) -> tuple[list[int], list[int]]:
    last = max(i for i, m in enumerate(messages) if m.role == "assistant")

    def trained(index):
        if index is None:
            return loss_on == "all"
        if messages[index].train is not None:
            return messages[index].train
        return loss_on in ("all", "assistant") or index == last

    runs: list[list] = []
    for text, index in reference_pieces(template, messages):
        flag = trained(index)
        if runs and runs[-1][1] == flag:
            runs[-1][0] += text
        else:
            runs.append([text, flag])
    ids, labels = [], []
    for text, flag in runs:
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if flag else [M] * len(piece)
    return ids, labels


@pytest.mark.parametrize("loss_on", LOSS_MODES)
@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("fmt", list(FORMAT_ROWS))
def test_golden_format_template_loss(smol_tokenizer, fmt, template, loss_on):
    (conversation,), info = to_examples([(FORMAT_ROWS[fmt], "g:1")], "auto")
    assert info.format == fmt.split("+")[0]
    settings = TokenizeSettings(template=template, loss_on=loss_on, max_length=4096)
    rows, stats = tokenize_examples(smol_tokenizer, [conversation], "causal_lm", settings)
    ids, labels = expected(smol_tokenizer, template, conversation.messages, loss_on)
    if not any(t != M for t in labels):
        assert rows == [] and stats.dropped_no_trained_token == 1
        return
    assert rows == [{"input_ids": ids, "labels": labels}]


# --- literal pins: "2+2?" -> "4" under loss_on=assistant ------------------------------------

PINNED = {
    "chatml": ([1, 4093, 198, 34, 27, 34, 47, 2, 198, 1, 520, 9531, 198, 36, 2, 198],
               [M] * 13 + [36, 2, M]),
    "tags": ([3757, 11122, 42, 198, 34, 27, 34, 47, 198, 198, 3757, 20108, 42, 198, 36, 2],
             [M] * 14 + [36, 2]),
    "plain": ([34, 27, 34, 47, 198, 36, 2, 198], [M] * 5 + [36, 2, M]),
    "alpaca": ([19798, 314, 354, 5785, 338, 6601, 253, 3856, 30, 9517, 253, 2426, 338, 13674, 32873, 260,
                3116, 30, 198, 198, 3757, 20880, 42, 198, 34, 27, 34, 47, 198, 198, 3757, 14212, 42, 198,
                36, 2, 1116], [M] * 34 + [36, 2, M]),
}


@pytest.mark.parametrize("template", list(PINNED))
def test_pinned_ids(smol_tokenizer, template):
    conversation = Conversation([Message("user", "2+2?"), Message("assistant", "4")])
    tpl = resolve_template(smol_tokenizer, DataConfig(template=template))
    assert tokenize_conversation(smol_tokenizer, conversation, "assistant", tpl) == {
        "input_ids": PINNED[template][0], "labels": PINNED[template][1]}


def test_pinned_segments_per_template(smol_tokenizer):
    c = Conversation([Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"),
                      Message("user", "2+2?"), Message("assistant", "4")])
    seg = {name: resolve_template(smol_tokenizer, DataConfig(template=name)).render_segments(c, "last_assistant")
           for name in TEMPLATES}
    assert seg["chatml"] == seg["auto"] == [
        ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
         "Hello<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n", False),
        ("4<|im_end|>", True), ("\n", False)]
    assert seg["alpaca"] == [
        ("Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello<|im_end|>\n\n### Instruction:\n2+2?\n\n"
         "### Response:\n", False), ("4<|im_end|>", True), ("\n\n", False)]
    assert seg["plain"] == [("Be brief.\n\nHi\nHello<|im_end|>\n2+2?\n", False), ("4<|im_end|>", True), ("\n", False)]
    assert seg["tags"] == [("Be brief.\n\n### User:\nHi\n\n### Assistant:\nHello<|im_end|>### User:\n2+2?\n\n"
                            "### Assistant:\n", False), ("4<|im_end|>", True)]
    assert seg["llama3"] == [
        ("<|im_start|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
         "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>"
         "<|im_end|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant"
         "<|end_header_id|>\n\n", False), ("4<|eot_id|><|im_end|>", True)]


# --- one entry point for training and inference ---------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES)
def test_prompt_is_the_training_prefix(smol_tokenizer, template):
    tpl = resolve_template(smol_tokenizer, DataConfig(template=template))
    c = Conversation([Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "2+2?"),
                      Message("assistant", "4")])
    segments = tpl.render_segments(c, "assistant")
    text = "".join(s for s, _ in segments)
    prompt = tpl.render_prompt(c.prompt_messages())
    answer = "\n4" if template == "continuation" else "4"  # continuation: the answer starts on its own line
    assert segments[-1][0].startswith(answer) or segments[-2][0].startswith(answer)
    assert text.startswith(prompt.replace("Hello<|eot_id|>", "Hello<|eot_id|><|im_end|>"))


@pytest.mark.parametrize("template", ["chatml", "llama3", "alpaca", "plain", "tags"])
def test_saved_jinja_renders_the_same(smol_tokenizer, template):
    """What a run directory saves as the tokenizer's chat template reproduces the rendering."""
    tpl = resolve_template(smol_tokenizer, DataConfig(template=template, tags=PromptTags(user_start="Q: {}\"}}")))
    messages = [Message("system", "S"), Message("user", "Hi"), Message("assistant", "Yo")]
    for generation_prompt in (True, False):
        via_jinja = smol_tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages], chat_template=tpl.jinja,
            tokenize=False, add_generation_prompt=generation_prompt)
        assert via_jinja == tpl.render(messages, generation_prompt)


def test_module_functions_use_the_tokenizers_template(smol_tokenizer):
    c = Conversation([Message("user", "2+2?"), Message("assistant", "4")])
    auto = resolve_template(smol_tokenizer)
    assert render_segments(smol_tokenizer, c, "assistant") == auto.render_segments(c, "assistant")
    assert render_prompt(smol_tokenizer, c.prompt_messages()) == auto.render_prompt(c.prompt_messages())
    assert auto.jinja == smol_tokenizer.chat_template


def test_template_names():
    assert template_names() == ["auto", "tags", "alpaca", "chatml", "continuation", "llama3", "plain"]
    with pytest.raises(ConfigError, match="Did you mean 'chatml'"):
        resolve_template(None, DataConfig(template="chatlm"))


# --- tags -----------------------------------------------------------------------------------


def test_tags_with_an_explicit_end_train_it_and_eos(smol_tokenizer):
    tags = PromptTags(system_start="<s>", system_end="</s>", user_start="Q: ", user_end="\n",
                      assistant_start="A: ", assistant_end="\n")
    tpl = resolve_template(smol_tokenizer, DataConfig(template="tags", tags=tags))
    c = Conversation([Message("system", "S"), Message("user", "x"), Message("assistant", "y")])
    assert tpl.render_segments(c, "assistant") == [("<s>S</s>Q: x\nA: ", False), ("y\n<|im_end|>", True)]
    tags.assistant_end = "<|im_end|>\n"  # an end that holds EOS: trained through EOS only
    tpl = resolve_template(smol_tokenizer, DataConfig(template="tags", tags=tags))
    assert tpl.render_segments(c, "assistant")[1:] == [("y<|im_end|>", True), ("\n", False)]


# --- BOS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bos_tokenizer(smol_tokenizer):
    """The SmolLM2 tokenizer set to put BOS before plain text, like Llama 2's."""
    tok = copy.deepcopy(smol_tokenizer)
    tok.add_bos_token = True
    return tok


@pytest.mark.parametrize("template, starts", [
    ("chatml", "<|im_start|><|im_start|>user"), ("plain", "<|im_start|>Hi"), ("tags", "<|im_start|>### User:"),
    ("alpaca", "<|im_start|>Below is"), ("llama3", "<|im_start|><|start_header_id|>"),
    ("auto", "<|im_start|>system\nYou are"),
])
def test_shipped_templates_start_with_bos_when_the_tokenizer_adds_one(bos_tokenizer, template, starts):
    tpl = resolve_template(bos_tokenizer, DataConfig(template=template))
    assert tpl.render_prompt([Message("user", "Hi")]).startswith(starts)
    assert not tpl.render_prompt([Message("user", "Hi")]).startswith("<|im_start|>" * 3)


# --- errors ---------------------------------------------------------------------------------


def test_no_chat_template_with_auto_continues_plain_text_said_once(smol_tokenizer, caplog):
    import logging

    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = None
    tok.name_or_path = "no-template-model"
    with caplog.at_level(logging.WARNING, logger="tunesmith.data.templates"):
        tpl = resolve_template(tok, DataConfig())
        resolve_template(tok, DataConfig())
    told = [r.getMessage() for r in caplog.records if "no chat template" in r.getMessage()]
    assert len(told) == 1 and "data.template" in told[0] and "chatml" in told[0] and "tags" in told[0]
    assert tpl.name == "continuation"
    assert tpl.render_prompt([Message("user", "Once upon a time")]) == "Once upon a time"
    segments = tpl.render_segments(Conversation([Message("user", "2+2?"), Message("assistant", "4")]), "assistant")
    assert segments == [("2+2?", False), ("\n4" + tok.eos_token, True), ("\n", False)]
    c = Conversation([Message("user", "a"), Message("assistant", "b")])
    for name in ("chatml", "plain", "tags"):  # a named template needs no chat template of the model
        assert resolve_template(tok, DataConfig(template=name)).render_segments(c, "assistant")


def test_a_template_that_is_not_a_growing_prefix_is_an_error(smol_tokenizer, tmp_path):
    path = tmp_path / "count.jinja"
    path.write_text("{{ messages|length }}{% for m in messages %}{{ m.content }}{% endfor %}")
    tpl = resolve_template(smol_tokenizer, DataConfig(template=str(path)))
    with pytest.raises(DataError, match="t:9: .*growing prefix"):
        tpl.render_segments(Conversation([Message("user", "a"), Message("assistant", "b")], where="t:9"), "all")


def test_a_jinja_template_file_can_be_given(smol_tokenizer, tmp_path):
    path = tmp_path / "mine.jinja"
    path.write_text("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
                    "{% if add_generation_prompt %}[assistant] {% endif %}\n")
    tpl = resolve_template(smol_tokenizer, DataConfig(template=str(path)))
    c = Conversation([Message("user", "a"), Message("assistant", "b")])
    assert tpl.render_segments(c, "assistant") == [("[user] a\n[assistant] ", False), ("b\n<|im_end|>", True)]


def test_template_errors_name_the_example(smol_tokenizer):
    tpl = resolve_template(smol_tokenizer, DataConfig(template="alpaca"))
    c = Conversation([Message("user", "a"), Message("system", "late"), Message("assistant", "b")], where="f:4")
    with pytest.raises(DataError, match="f:4: the alpaca chat template failed: .*only as the first message"):
        tpl.render_segments(c, "assistant")
