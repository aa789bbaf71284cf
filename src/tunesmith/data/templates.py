"""Rendering conversations to text with a per-segment trained flag, for training and inference.

``template_named(tokenizer, name, tags)`` is the one entry point: training calls
``render_segments`` on its result and inference calls ``render_prompt``, so a tuned model is always
prompted exactly the way it was trained. ``data.template`` picks the template (with ``auto`` the
run picks, ``tunesmith.api.choices.data``):

- None (``own``): the tokenizer's own chat template; a tokenizer without one (a base model such as
  GPT-2) gets ``continuation``, so a prompt is continued as plain text (said once per tokenizer);
- ``chatml``, ``llama3``, ``alpaca``, ``plain``, ``continuation``: Jinja files shipped in
  ``data/chat_templates/`` (``continuation`` renders a prompt as the text itself and starts each
  answer on a new line; ``plain`` ends every turn with a newline);
- ``tags``: literal markers from ``data.tags`` (``PromptTags``), no Jinja.

What is trained is defined by the growing-prefix method: render the conversation up to turn *i*
with the generation prompt (``P``) and up to and including turn *i* (``F``). ``F`` starts with
``P``; the rest is what the assistant said followed by the template's end of turn. That span is
trained up to and including the EOS token, so the model learns to stop; text the template puts
after EOS (a newline) is not. When the end of turn has no EOS, EOS is appended and trained.
That costs two renderings per assistant turn; ``data/turn_spans.py`` finds the same spans with one
rendering per conversation and falls back to this method where it cannot. A template that renders
earlier turns differently once later ones exist (Qwen3's ``<think>`` blocks) is refused, or with
``data.rerendered_history`` trained one answer at a time (``per_turn``) or on its last answer.

Templates shipped here know nothing of the model, so they start with BOS exactly when the
tokenizer adds one to plain text (Llama 2 does, SmolLM2 and GPT-2 do not); ``llama3`` writes its
BOS itself. The model's own template is taken as it is.
"""

from __future__ import annotations

import abc
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from tunesmith.config.schema import PromptTags
from tunesmith.data.examples import Conversation, Message
from tunesmith.errors import ConfigError, DataError
from tunesmith.registry import did_you_mean

logger = logging.getLogger(__name__)

Segment = tuple[str, bool]  # (text, trained)
Cut = tuple[str, Optional[int]]  # (text, index of the assistant message it answers; None: not an answer)
BUILTIN_KINDS = ("tags",)  # data.template values that are not Jinja files
OWN_TEMPLATE = "own"  # how a run's plan names the tokenizer's own chat template (name None here)


def named_templates() -> list[str]:
    """The Jinja templates shipped in ``data/chat_templates``:
    ``["alpaca", "chatml", "continuation", "llama3", "plain"]``."""
    folder = resources.files("tunesmith.data") / "chat_templates"
    return sorted(p.name[: -len(".jinja")] for p in folder.iterdir() if p.name.endswith(".jinja"))


def template_names() -> list[str]:
    """Every template this module renders by name: ``["tags", "alpaca", "chatml", "continuation", "llama3", "plain"]``."""
    return list(BUILTIN_KINDS) + named_templates()


def check_template_name(name: Optional[str]) -> None:
    """Fail fast on an unknown template name (None: the tokenizer's own; a ``.jinja`` path is allowed too)."""
    if name is None or name in template_names() or name.endswith(".jinja"):
        return
    names = template_names()
    raise ConfigError(f"data.template: unknown template '{name}'.{did_you_mean(name, names)} "
                      f"Known: auto, {', '.join(names)} (or a path to a .jinja file)")


def load_named_template(name: str) -> str:
    """The Jinja source of a shipped template (``"chatml"``) or of a ``.jinja`` file path."""
    check_template_name(name)
    if name.endswith(".jinja"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"data.template: the template file {name!r} does not exist")
        return path.read_text(encoding="utf-8").rstrip("\n")
    return (resources.files("tunesmith.data") / "chat_templates" / f"{name}.jinja").read_text("utf-8").rstrip("\n")


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts BOS before plain text: Llama 2 -> True, SmolLM2 / GPT-2 / BERT -> False."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos_id


def _split_answer(answer: str, eos: str) -> tuple[str, str]:
    """``"4<|im_end|>\\n"`` -> ``("4<|im_end|>", "\\n")``: trained through EOS (appended when absent)."""
    if not eos:
        return answer, ""
    if eos in answer:
        cut = answer.find(eos) + len(eos)
        return answer[:cut], answer[cut:]
    return answer + eos, ""  # a template without an end token: EOS still has to be learned


def _merge(segments: list[Segment]) -> list[Segment]:
    """Join neighbours with the same flag and drop empty ones:
    ``[("a", False), ("b", False), ("", True), ("c", True)]`` -> ``[("ab", False), ("c", True)]``.

    Each segment is tokenized on its own, so joining keeps a prompt's tokens the same as when
    inference tokenizes the prompt in one piece.
    """
    merged: list[Segment] = []
    for text, trained in segments:
        if not text:
            continue
        if merged and merged[-1][1] == trained:
            merged[-1] = (merged[-1][0] + text, trained)
        else:
            merged.append((text, trained))
    return merged


class NotGrowingPrefix(DataError):
    """The template renders earlier turns differently once later turns exist."""


def segments_from_cuts(conversation: Conversation, cuts: list[Cut], loss_on: str) -> list[Segment]:
    """Trained flags for cuts (``ChatTemplate.cuts_by_prefix``), neighbours merged: template text is
    trained only under ``loss_on=all``; an answer per its message's ``train`` flag, else under
    ``all`` / ``assistant``, or when it is the last one (``last_assistant``)."""
    messages = conversation.messages
    last = max(i for i, m in enumerate(messages) if m.role == "assistant")
    segments: list[Segment] = []
    for text, turn in cuts:
        if turn is None:
            segments.append((text, loss_on == "all"))
            continue
        train = messages[turn].train
        segments.append((text, (loss_on in ("all", "assistant") or turn == last) if train is None else train))
    return _merge(segments)


class ChatTemplate(abc.ABC):
    """Renders conversations for one tokenizer. Subclasses implement ``render``."""

    name = "base"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.eos = tokenizer.eos_token or ""

    @property
    def jinja(self) -> Optional[str]:
        """A Jinja chat template that renders the same text (save it with the tokenizer), or None."""
        return None

    @abc.abstractmethod
    def render(self, messages: list[Message], add_generation_prompt: bool) -> str:
        """The conversation as text, ending with the assistant prompt when asked."""

    def render_prompt(self, messages: list[Message]) -> str:
        """The text a model continues from (chatml): ``[user "2+2?"]`` ->
        ``"<|im_start|>user\\n2+2?<|im_end|>\\n<|im_start|>assistant\\n"``."""
        return self.render(messages, True)

    def render_segments(self, conversation: Conversation, loss_on: str) -> list[Segment]:
        """Split the rendered conversation into (text, trained) segments (one rendering, see
        ``data/turn_spans.py``; the growing-prefix method where that does not apply).

        Example (chatml, loss_on=assistant)::

            [("<|im_start|>user\\n2+2?<|im_end|>\\n<|im_start|>assistant\\n", False),
             ("4<|im_end|>", True), ("\\n", False)]
        """
        return self.segments_many([conversation], loss_on)[0]

    def segments_many(self, conversations: list[Conversation], loss_on: str) -> list[list[Segment]]:
        """``render_segments`` for many conversations, each rendered once (and all in one call)."""
        from tunesmith.data.turn_spans import spans_for

        return spans_for(self).segments_many(conversations, loss_on)

    def render_many(self, conversations: list[list[Message]]) -> list[Optional[str]]:
        """Each conversation rendered in full (no generation prompt); None where rendering failed
        (the growing-prefix method then reports the error with the example's file:line)."""
        out: list[Optional[str]] = []
        for messages in conversations:
            try:
                out.append(self.render(messages, False))
            except Exception:  # Jinja raises many types; reported again, with where, by the fallback
                out.append(None)
        return out

    def render_segments_by_prefix(self, conversation: Conversation, loss_on: str) -> list[Segment]:
        """The growing-prefix method (see the module docstring): two renderings per assistant turn.
        The reference the one-rendering method is tested against, and its fallback."""
        return segments_from_cuts(conversation, self.cuts_by_prefix(conversation), loss_on)

    def cuts_by_prefix(self, conversation: Conversation, split_answers: bool = True) -> list[Cut]:
        """The rendered conversation as consecutive cuts ``(text, turn)``: ``turn`` is the index of
        the assistant message an answer cut belongs to, None for prompt and template text.

        chatml, ``[user "2+2?", assistant "4"]`` -> ``[("<|im_start|>user\\n2+2?<|im_end|>\\n<|im_start|>"
        "assistant\\n", None), ("4<|im_end|>", 1), ("\\n", None), ("", None)]``. With
        ``split_answers=False`` an answer cut runs to the end of its turn (``"4<|im_end|>\\n"``)
        and no EOS is appended.
        """
        messages = conversation.messages
        assistant_turns = [i for i, m in enumerate(messages) if m.role == "assistant"]
        if not assistant_turns:
            raise DataError(f"{conversation.where}: no assistant message to train on")
        cuts: list[Cut] = []
        done = ""  # text rendered so far
        for i in assistant_turns:
            before = self._render_at(conversation, messages[:i], True)
            full = self._render_at(conversation, messages[: i + 1], False)
            if not before.startswith(done) or not full.startswith(before):
                raise NotGrowingPrefix(
                    f"{conversation.where}: the {self.name} chat template does not render turns as a growing "
                    "prefix (it renders earlier turns differently once later ones exist), so assistant tokens "
                    "cannot be located; set data.rerendered_history to per_turn (one example per answer, with "
                    "the history as the template renders it at that turn) or last_turn (train the last answer "
                    "only), or set data.template to a template that does (chatml, llama3, alpaca, plain or tags)"
                )
            cuts.append((before[len(done):], None))
            if split_answers:
                trained, rest = _split_answer(full[len(before):], self.eos)
                cuts += [(trained, i), (rest, None)]
            else:
                cuts.append((full[len(before):], i))
            done = full
        cuts.append((self._render_at(conversation, messages, False)[len(done):], None))
        return cuts

    def cuts_of_last_turn(self, conversation: Conversation) -> list[Cut]:
        """The cuts when only the last answer is located: everything before it is prompt, rendered
        once with the generation prompt, as the model sees it when it writes that answer."""
        messages = conversation.messages
        i = max(k for k, m in enumerate(messages) if m.role == "assistant")
        before = self._render_at(conversation, messages[:i], True)
        full = self._render_at(conversation, messages[: i + 1], False)
        whole = self._render_at(conversation, messages, False)
        if not full.startswith(before) or not whole.startswith(full):
            raise DataError(f"{conversation.where}: the {self.name} chat template does not render the last answer "
                            "after its own generation prompt, so its tokens cannot be located even with "
                            "data.rerendered_history; set data.template to a template that does")
        trained, rest = _split_answer(full[len(before):], self.eos)
        return [(before, None), (trained, i), (rest, None), (whole[len(full):], None)]

    def segment_groups(self, conversations: list[Conversation], loss_on: str,
                       rerendered: str = "error") -> list[list[list[Segment]]]:
        """Per conversation, the segment lists of the examples it gives: one, except where the
        template re-renders earlier turns and ``rerendered`` (``data.rerendered_history``) is
        ``per_turn`` (one per trained answer; none when no answer is trained)."""
        from tunesmith.data.turn_spans import spans_for

        return spans_for(self).segment_groups(conversations, loss_on, rerendered)

    def _render_at(self, conversation: Conversation, messages: list[Message], generation_prompt: bool) -> str:
        try:
            return self.render(messages, generation_prompt)
        except DataError:
            raise
        except Exception as err:  # Jinja raises many types (TemplateError, TypeError on None, ...)
            raise DataError(f"{conversation.where}: the {self.name} chat template failed: {err}") from err


class JinjaChatTemplate(ChatTemplate):
    """A Jinja chat template rendered by the tokenizer (``source=None``: the tokenizer's own)."""

    def __init__(self, tokenizer: Any, name: str = OWN_TEMPLATE, source: Optional[str] = None) -> None:
        super().__init__(tokenizer)
        self.name = name
        if source is None and not getattr(tokenizer, "chat_template", None):
            raise DataError(
                "the tokenizer has no chat template of its own to use; "
                f"set data.template to one of {', '.join(named_templates())} or tags"
            )
        if source is not None and adds_bos(tokenizer) and "bos_token" not in source:
            source = "{{ bos_token }}" + source  # see the module docstring on BOS
        self.source = source

    @property
    def jinja(self) -> Optional[str]:
        return self.source if self.source is not None else self.tokenizer.chat_template

    def render(self, messages: list[Message], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages], chat_template=self.source,
            tokenize=False, add_generation_prompt=add_generation_prompt,
        )

    def render_many(self, conversations: list[list[Message]]) -> list[Optional[str]]:
        # The template compiled as apply_chat_template compiles it, called with the same variables
        # (messages, the special tokens) minus its per-call conversions, which plain role/content
        # strings do not need: a third of the time. turn_spans checks every rendering against a
        # plan made with apply_chat_template itself, so a difference would only cost speed.
        render = self._compiled()
        if render is None:
            return super().render_many(conversations)
        out: list[Optional[str]] = []
        for messages in conversations:
            try:
                out.append(render([{"role": m.role, "content": m.content} for m in messages]))
            except Exception:  # Jinja raises many types; reported again, with where, by the fallback
                out.append(None)
        return out

    def _compiled(self) -> Any:
        if "_render_fast" not in self.__dict__:
            try:
                from transformers.utils.chat_template_utils import _compile_jinja_template

                compiled = _compile_jinja_template(self.jinja)
                variables = dict(self.tokenizer.special_tokens_map)
                self._render_fast = lambda messages: compiled.render(
                    messages=messages, tools=None, documents=None, add_generation_prompt=False, **variables)
            except (ImportError, AttributeError, TypeError):  # another transformers: apply_chat_template per row
                self._render_fast = None
        return self._render_fast


class TagsChatTemplate(ChatTemplate):
    """Literal markers from ``data.tags``; an answer is ``assistant_start + text + assistant_end``,
    with EOS after it when ``assistant_end`` does not hold one.

    ``PromptTags()`` renders ``[user "2+2?", assistant "4"]`` as
    ``"### User:\\n2+2?\\n\\n### Assistant:\\n4<eos>"``.
    """

    name = "tags"

    def __init__(self, tokenizer: Any, tags: Optional[PromptTags] = None) -> None:
        super().__init__(tokenizer)
        self.tags = tags or PromptTags()
        self.bos = tokenizer.bos_token if adds_bos(tokenizer) else ""
        end = self.tags.assistant_end
        self.answer_end = end if self.eos and self.eos in end else end + self.eos

    def _parts(self, role: str) -> tuple[str, str]:
        t = self.tags
        return {"system": (t.system_start, t.system_end), "user": (t.user_start, t.user_end),
                "assistant": (t.assistant_start, self.answer_end)}[role]

    def render(self, messages: list[Message], add_generation_prompt: bool) -> str:
        text = [self.bos]
        for m in messages:
            start, end = self._parts(m.role)
            text += [start, m.content, end]
        if add_generation_prompt:
            text.append(self.tags.assistant_start)
        return "".join(text)

    @property
    def jinja(self) -> str:
        """The same rendering as Jinja, with every marker as a literal (JSON quoting is valid Jinja)."""
        q = json.dumps
        branches = "".join(
            f"{{%- {'if' if i == 0 else 'elif'} message['role'] == {q(role)} %}}"
            f"{{{{- {q(start)} + message['content'] + {q(end)} }}}}"
            for i, role in enumerate(("system", "user", "assistant"))
            for start, end in [self._parts(role)]
        )
        return (f"{{{{- {q(self.bos)} }}}}{{%- for message in messages %}}{branches}{{%- endif %}}{{%- endfor %}}"
                f"{{%- if add_generation_prompt %}}{{{{- {q(self.tags.assistant_start)} }}}}{{%- endif %}}")


def template_named(tokenizer: Any, name: Optional[str] = None, tags: Optional[PromptTags] = None) -> ChatTemplate:
    """The chat template ``name`` for this tokenizer: None is the tokenizer's own (``continuation``
    for a tokenizer without one, said once), ``tags`` the markers of ``tags``, else a packaged
    template or a ``.jinja`` path.

    ``template_named(tok, "chatml").render_prompt([Message("user", "Hi")])``
    -> ``"<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n"``.
    """
    check_template_name(name)
    if name is None and not getattr(tokenizer, "chat_template", None):
        say_plain_once(tokenizer)
        name = "continuation"  # a base model without a chat template continues plain text
    if name is None:
        return JinjaChatTemplate(tokenizer)
    if name == "tags":
        return TagsChatTemplate(tokenizer, tags)
    return JinjaChatTemplate(tokenizer, name, load_named_template(name))


_TOLD_PLAIN: set[str] = set()  # tokenizers already reported as having no chat template


def say_plain_once(tokenizer: Any) -> None:
    """Log once per tokenizer that prompts and conversations are rendered as plain text."""
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    if name in _TOLD_PLAIN:
        return
    _TOLD_PLAIN.add(name)
    logger.warning("%s has no chat template: prompts are continued as plain text and conversations are "
                   "rendered with data.template=continuation (the prompt as written, then each answer on a "
                   "new line ending with EOS); set data.template to %s or tags for a chat format.",
                   name, ", ".join(n for n in named_templates() if n != "continuation"))


def render_prompt(tokenizer: Any, messages: list[Message], template: Optional[ChatTemplate] = None) -> str:
    """``ChatTemplate.render_prompt`` with the tokenizer's own template unless ``template`` is given."""
    return (template or template_named(tokenizer)).render_prompt(messages)


def render_segments(
    tokenizer: Any, conversation: Conversation, loss_on: str, template: Optional[ChatTemplate] = None
) -> list[Segment]:
    """``ChatTemplate.render_segments`` with the tokenizer's own template unless ``template`` is given."""
    return (template or template_named(tokenizer)).render_segments(conversation, loss_on)


def seq2seq_source(messages: list[Message]) -> str:
    """What an encoder-decoder model reads for a conversation: the turns' text, blank-line separated.

    ``[Message("system", "Summarise."), Message("user", "Long text")]`` -> ``"Summarise.\n\nLong text"``.
    """
    return "\n\n".join(m.content for m in messages)


def model_prompt(tokenizer: Any, messages: list[Message], encoder_decoder: bool = False) -> str:
    """The prompt text a model continues from, rendered as training rendered it for that model kind."""
    return seq2seq_source(messages) if encoder_decoder else render_prompt(tokenizer, messages)
