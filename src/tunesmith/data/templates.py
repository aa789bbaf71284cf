"""Rendering conversations to text with a per-character trained flag.

The tokenizer's own chat template is used. Training and inference share this module, so a
tuned model is always prompted exactly the way it was trained.

How assistant spans are found: render the conversation up to turn *i* with the generation prompt
(``P``) and up to and including turn *i* (``F``). ``F`` starts with ``P``; the rest is what the
assistant said, followed by the template's end-of-turn token. That span is trained up to and
including the EOS token (so the model learns to stop); whitespace the template puts after EOS is not.
"""

from __future__ import annotations

from typing import Any

from tunesmith.data.examples import Conversation, Message
from tunesmith.errors import DataError

Segment = tuple[str, bool]  # (text, trained)


def _as_dicts(messages: list[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _apply(tokenizer: Any, messages: list[Message], generation_prompt: bool) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "the tokenizer has no chat template; this model needs one to train on conversations"
        )
    return tokenizer.apply_chat_template(
        _as_dicts(messages), tokenize=False, add_generation_prompt=generation_prompt
    )


def render_prompt(tokenizer: Any, messages: list[Message]) -> str:
    """The text a model continues from: the conversation plus the assistant generation prompt."""
    return _apply(tokenizer, messages, generation_prompt=True)


def render_segments(tokenizer: Any, conversation: Conversation, loss_on: str) -> list[Segment]:
    """Split the rendered conversation into (text, trained) segments.

    Example (chatml, loss_on=assistant)::

        [("<|im_start|>user\\n2+2?<|im_end|>\\n<|im_start|>assistant\\n", False),
         ("4<|im_end|>", True), ("\\n", False)]
    """
    messages = conversation.messages
    assistant_turns = [i for i, m in enumerate(messages) if m.role == "assistant"]
    last = assistant_turns[-1] if assistant_turns else -1
    eos = tokenizer.eos_token or ""
    segments: list[Segment] = []
    done = ""  # text rendered so far
    for i in assistant_turns:
        before = render_prompt(tokenizer, messages[:i])
        full = _apply(tokenizer, messages[: i + 1], generation_prompt=False)
        if not before.startswith(done) or not full.startswith(before):
            raise DataError(
                f"{conversation.where}: the chat template does not render turns as a growing prefix, "
                "so assistant tokens cannot be located; use a template that does"
            )
        segments.append((before[len(done):], loss_on == "all"))
        answer = full[len(before):]
        train = messages[i].train
        if train is None:
            train = loss_on == "all" or loss_on == "assistant" or (loss_on == "last_assistant" and i == last)
        cut = answer.find(eos) + len(eos) if eos and eos in answer else len(answer)
        trained, rest = answer[:cut], answer[cut:]
        if eos and eos not in trained:
            trained += eos  # a template without an end token: EOS still has to be learned
        segments.append((trained, train))
        if rest:
            segments.append((rest, loss_on == "all"))
        done = full
    if not assistant_turns:
        raise DataError(f"{conversation.where}: no assistant message to train on")
    tail = _apply(tokenizer, messages, generation_prompt=False)[len(done):]
    if tail:
        segments.append((tail, loss_on == "all"))
    return [s for s in segments if s[0]]
