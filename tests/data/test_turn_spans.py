"""One rendering per conversation finds exactly the segments and token ids of the growing-prefix
method (two renderings per assistant turn), for every shipped template, on random conversations;
where it cannot apply (a template that rewrites contents or re-renders earlier turns) it falls
back and still agrees, errors included."""

from __future__ import annotations

import random

import pytest

from tunesmith.config.schema import DataConfig, PromptTags
from tunesmith.data.examples import Conversation, Message
from tunesmith.api.choices.data import resolve_template
from tunesmith.data.templates import JinjaChatTemplate, named_templates
from tunesmith.api.data_entry import tokenize_examples
from tunesmith.api.data_entry import tokenize_settings as TokenizeSettings
from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.data.turn_spans import spans_for
from tunesmith.errors import DataError
from shared_templates import REASONING  # tests/data is on sys.path (its conftest)

TEMPLATES = ["auto", "tags"] + named_templates()
LOSS_MODES = ["all", "assistant", "last_assistant"]
# Contents chosen to trip a one-rendering shortcut: whitespace a template may trim, the EOS text
# inside an answer, template markers, role names, the marker characters themselves, empty text.
TRICKY = ["", " ", "\n", "  padded  ", "\nleading newline", "trailing newline\n", "<|im_end|>",
          "stop<|im_end|>then more", "user", "assistant", "### Response:\n", "<|eot_id|>", "\ue000",
          "0\ue001", "<|im_start|>assistant\n", "Ünïcödé ✓ 数字 123", "a  b\t\tc", "### Instruction:"]
WORDS = "the model answer question value table river four seven plus equals why because".split()


def random_text(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return rng.choice(TRICKY)
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
    if rng.random() < 0.2:
        text = rng.choice(TRICKY) + text + rng.choice(TRICKY)
    return text


def random_conversation(rng: random.Random, index: int, user_first: bool = False) -> Conversation:
    """1-5 answers, some with per-message train flags; sometimes two answers in a row, or (unless
    ``user_first``) an answer first, which the Jinja templates refuse."""
    messages = []
    if rng.random() < 0.4:
        messages.append(Message("system", random_text(rng)))
    for turn in range(rng.randint(1, 5)):
        if rng.random() < 0.9 or (user_first and turn == 0):
            messages.append(Message("user", random_text(rng)))
        train = rng.choice([None, None, None, True, False])
        messages.append(Message("assistant", random_text(rng), train=train))
    if rng.random() < 0.1:
        messages.append(Message("user", random_text(rng)))  # a trailing question, after the last answer
    return Conversation(messages, where=f"random.jsonl:{index}")


def outcome(fn, *args):
    """The result, or the error message: both methods must fail alike."""
    try:
        return fn(*args)
    except DataError as err:
        return f"DataError: {err}"


def reference_rows(tokenizer, template, conversations, loss_on):
    """Today's rows, built the old way: growing-prefix segments, one tokenizer call per segment."""
    rows = []
    for c in conversations:
        ids, labels = [], []
        for text, trained in template.render_segments_by_prefix(c, loss_on):
            part = tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += part
            labels += part if trained else [IGNORE_INDEX] * len(part)
        if any(t != IGNORE_INDEX for t in labels):
            rows.append({"input_ids": ids, "labels": labels})
    return rows


@pytest.mark.parametrize("name", TEMPLATES)
def test_one_rendering_gives_the_growing_prefix_segments(smol_tokenizer, name):
    template = resolve_template(smol_tokenizer, DataConfig(template=name, tags=PromptTags()))
    rng = random.Random(name)
    conversations = [random_conversation(rng, i) for i in range(300)]
    for loss_on in LOSS_MODES:
        for c in conversations:
            assert outcome(template.render_segments, c, loss_on) == \
                outcome(template.render_segments_by_prefix, c, loss_on), (name, loss_on, c)
    # Only contents a template rewrites (llama3 trims) may need the fallback; plain text never does.
    plain = [Conversation([Message("user", "two plus two"), Message("assistant", "four")] * 3, where="x:1")]
    spans = spans_for(template)
    before = spans.fallbacks
    template.segments_many(plain, "assistant")
    assert spans.fallbacks == before


@pytest.mark.parametrize("name", TEMPLATES)
def test_batched_token_ids_equal_per_segment_tokenizing(smol_tokenizer, name):
    cfg = DataConfig(template=name, max_length=100_000)
    template = resolve_template(smol_tokenizer, cfg)
    rng = random.Random(f"ids-{name}")
    conversations = [random_conversation(rng, i, user_first=True) for i in range(200)]
    for loss_on in LOSS_MODES:
        settings = TokenizeSettings(loss_on=loss_on, max_length=100_000, template=name)
        ours = outcome(lambda: tokenize_examples(smol_tokenizer, conversations, "causal_lm", settings,
                                                 template=template)[0])
        assert ours == outcome(reference_rows, smol_tokenizer, template, conversations, loss_on)
        assert isinstance(ours, list) and len(ours) > 100


# A template that branches on what a message says.
SHOUTING = (
    "{%- for message in messages %}{%- if message['content'].endswith('!') %}{{- '[LOUD]' }}{%- endif %}"
    "{{- message['role'] + ': ' + message['content'] + eos_token + '\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'assistant: ' }}{%- endif %}"
)


@pytest.mark.parametrize("source", [REASONING, SHOUTING], ids=["reasoning", "content-branching"])
def test_templates_that_rewrite_contents_fall_back_and_agree(smol_tokenizer, source):
    template = JinjaChatTemplate(smol_tokenizer, "custom", source)
    conversations = [
        Conversation([Message("user", "hi!"), Message("assistant", "<think>\nhm</think>\nhello!"),
                      Message("user", "2+2?"), Message("assistant", "<think>add</think>4")], where="c.jsonl:1"),
        Conversation([Message("user", "hi"), Message("assistant", "hello")], where="c.jsonl:2"),
        Conversation([Message("user", "hi!"), Message("assistant", "<think>x</think>hello")], where="c.jsonl:3"),
    ]
    for c in conversations:
        for loss_on in LOSS_MODES:
            assert outcome(template.render_segments, c, loss_on) == \
                outcome(template.render_segments_by_prefix, c, loss_on)
    assert spans_for(template).fallbacks > 0
    assert "growing" in outcome(template.render_segments, conversations[0], "assistant")


def test_an_end_of_answer_the_model_does_not_stop_at_is_refused(smol_tokenizer, tmp_path):
    import json

    from tunesmith.api.data_entry import build_datasets
    from tunesmith.models.loading import load_tokenizer

    smol_tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "generation_config.json").write_text(json.dumps({"eos_token_id": 0}))
    tokenizer = load_tokenizer(str(tmp_path / "model"))
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi", "output": "hi"}) + "\n")
    with pytest.raises(DataError, match=r"eos_token_id is '<\|endoftext\|>' \(0\), but training ends every answer "
                                         r"with the tokenizer's EOS '<\|im_end\|>' \(2\).*set eos_token_id to \[0, 2\]"):
        build_datasets({"train": str(data), "cache": False}, tokenizer)
    (tmp_path / "model" / "generation_config.json").write_text(json.dumps({"eos_token_id": [0, 2]}))
    assert len(build_datasets({"train": str(data), "cache": False}, tokenizer).train) == 1


def test_rerendered_history_per_turn_and_last_turn(smol_tokenizer):
    template = JinjaChatTemplate(smol_tokenizer, "custom", REASONING)
    chat = Conversation([Message("user", "hi!"), Message("assistant", "<think>\nhm</think>\nhello!"),
                         Message("user", "2+2?"), Message("assistant", "<think>add</think>4")], where="c.jsonl:7")

    def ids(text):
        return smol_tokenizer(text, add_special_tokens=False)["input_ids"]

    def row(prompt, answer, after="\n"):
        p, a, r = ids(prompt), ids(answer), ids(after)
        return {"input_ids": p + a + r, "labels": [IGNORE_INDEX] * len(p) + a + [IGNORE_INDEX] * len(r)}

    first = row("<|im_start|>user\nhi!<|im_end|>\n<|im_start|>assistant\n", "<think>\nhm</think>\nhello!<|im_end|>")
    # At the second answer the template shows the first one without its <think> block.
    last = row("<|im_start|>user\nhi!<|im_end|>\n<|im_start|>assistant\nhello!<|im_end|>\n<|im_start|>user\n2+2?"
               "<|im_end|>\n<|im_start|>assistant\n", "<think>add</think>4<|im_end|>")

    def rows(mode, loss_on="assistant"):
        settings = TokenizeSettings(rerendered_history=mode, loss_on=loss_on)
        return tokenize_examples(smol_tokenizer, [chat], "causal_lm", settings, template=template, progress=False)

    with pytest.raises(DataError, match="c.jsonl:7: .*growing prefix.*data.rerendered_history"):
        rows("error")
    assert rows("per_turn")[0] == [first, last] and rows("per_turn")[1].kept == 2
    assert rows("per_turn", "last_assistant")[0] == [last]
    assert rows("last_turn")[0] == [last]
    chat.messages[3].train = False  # per_turn keeps the answers that are trained, last_turn has none left
    assert rows("per_turn")[0] == [first]
    assert rows("last_turn")[0] == [] and rows("last_turn")[1].dropped_no_trained_token == 1


def test_rerendered_history_is_checked():
    from tunesmith.config import load_config
    from tunesmith.errors import ConfigError

    with pytest.raises(ConfigError, match="rerendered_history"):
        load_config(overrides=["data.rerendered_history=sometimes"])


@pytest.mark.parametrize("tags", [
    PromptTags(user_start="Q: ", user_end="", assistant_start="A: ", assistant_end="<|im_end|>\n"),
    PromptTags(system_start="<<", system_end=">>", user_start="", user_end="\n", assistant_start="",
               assistant_end=" END"),
], ids=["end-with-eos", "bare-markers"])
def test_one_rendering_matches_for_custom_tags(smol_tokenizer, tags):
    template = resolve_template(smol_tokenizer, DataConfig(template="tags", tags=tags))
    rng = random.Random(str(tags))
    for i in range(200):
        c = random_conversation(rng, i)
        for loss_on in LOSS_MODES:
            assert outcome(template.render_segments, c, loss_on) == \
                outcome(template.render_segments_by_prefix, c, loss_on), (loss_on, c)
