"""Canonical example types. Every input format is converted to one of these before tokenizing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

ROLES = ("system", "user", "assistant")


@dataclass
class Message:
    """One turn. ``train`` overrides ``data.loss_on`` for this message when set."""

    role: str
    content: str
    train: Optional[bool] = None


@dataclass
class Conversation:
    """A chat example: ``[Message("user", "2+2?"), Message("assistant", "4")]``.

    ``reference`` is the expected final answer when the source gives one (used by evaluation);
    ``where`` is the file:line (or dataset:index) the example came from, for error messages.
    """

    messages: list[Message]
    reference: Optional[str] = None
    where: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def prompt_messages(self) -> list[Message]:
        """The conversation up to (not including) its last assistant turn: what a model is asked."""
        last = max((i for i, m in enumerate(self.messages) if m.role == "assistant"), default=None)
        return self.messages if last is None else self.messages[:last]

    def last_answer(self) -> Optional[str]:
        """The content of the last assistant turn, or None when there is none."""
        answers = [m.content for m in self.messages if m.role == "assistant"]
        return answers[-1] if answers else None


@dataclass
class TextExample:
    """Plain text for language modelling: every token is trained. ``{"text": "Once upon a time"}``."""

    text: str
    where: str = ""


@dataclass
class ClassificationExample:
    """One text (or a sentence pair) and its label id.

    ``{"sentence1": "A cat sat.", "sentence2": "A cat was sitting.", "label": 1}`` ->
    ``ClassificationExample("A cat sat.", 1, text_pair="A cat was sitting.")``.
    """

    text: str
    label: int
    text_pair: Optional[str] = None
    where: str = ""
    label_name: Optional[str] = None  # the name the file used ("positive"), when it used names


@dataclass
class Seq2SeqExample:
    """Source and target text for encoder-decoder models: ``{"source": "...", "target": "..."}``."""

    source: str
    target: str
    where: str = ""


@dataclass
class TokenizedExample:
    """Token ids that were tokenized before tunesmith saw them; ``labels`` as in ``data/tokenize.py``
    (unshifted, -100 where nothing is trained; None: every token is trained).

    ``{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}`` -> ``TokenizedExample([5, 6, 7], [-100, 6, 7])``.
    """

    input_ids: list[int]
    labels: Optional[list[int]] = None
    where: str = ""


@dataclass
class PreferenceExample:
    """A prompt and two completions, the ``chosen`` one preferred to the ``rejected`` one (DPO, ORPO,
    reward models). ``reference`` is the expected final answer when known (for exact match).

    ``{"prompt": "2+2?", "chosen": "4", "rejected": "5"}`` ->
    ``PreferenceExample([user "2+2?"], chosen=[assistant "4"], rejected=[assistant "5"])``.
    """

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    reference: Optional[str] = None
    where: str = ""


@dataclass
class UnpairedPreferenceExample:
    """A prompt and one completion marked desirable or not (KTO).

    ``{"prompt": "2+2?", "completion": "5", "label": false}`` ->
    ``UnpairedPreferenceExample([user "2+2?"], [assistant "5"], desirable=False)``.
    """

    prompt: list[Message]
    completion: list[Message]
    desirable: bool
    reference: Optional[str] = None
    where: str = ""


@dataclass
class PromptExample:
    """A prompt alone, to be answered by the model while it trains (GRPO); ``reference`` is the
    expected answer a verifiable reward compares with.

    ``{"prompt": "2+2?", "answer": "4"}`` -> ``PromptExample([user "2+2?"], reference="4")``.
    """

    prompt: list[Message]
    reference: Optional[str] = None
    where: str = ""


Example = (Conversation | TextExample | ClassificationExample | Seq2SeqExample | TokenizedExample
           | PreferenceExample | UnpairedPreferenceExample | PromptExample)

# The kind of example each format produces, by the name ``formats`` and ``tokenize`` use for it.
EXAMPLE_KINDS: dict[type, str] = {
    Conversation: "conversation",
    TextExample: "text",
    ClassificationExample: "classification",
    Seq2SeqExample: "seq2seq",
    TokenizedExample: "tokenized",
    PreferenceExample: "preference",
    UnpairedPreferenceExample: "unpaired_preference",
    PromptExample: "prompt",
}
# Fields that hold lists of messages, by example type (rebuilt into ``Message`` objects on reading).
_MESSAGE_FIELDS: dict[type, tuple[str, ...]] = {
    Conversation: ("messages",),
    PreferenceExample: ("prompt", "chosen", "rejected"),
    UnpairedPreferenceExample: ("prompt", "completion"),
    PromptExample: ("prompt",),
}


def example_to_dict(example: Example) -> dict[str, Any]:
    """An example as plain data (for the tokenized-data cache): ``TextExample("Hi", where="d.txt:1")``
    -> ``{"kind": "text", "text": "Hi", "where": "d.txt:1"}``."""
    from dataclasses import asdict

    return {"kind": EXAMPLE_KINDS[type(example)], **asdict(example)}


def example_from_dict(data: dict[str, Any]) -> Example:
    """The inverse of ``example_to_dict``."""
    data = dict(data)
    wanted = data.pop("kind")
    cls = next(c for c, kind in EXAMPLE_KINDS.items() if kind == wanted)
    for name in _MESSAGE_FIELDS.get(cls, ()):
        data[name] = [Message(**m) for m in data[name]]
    return cls(**data)


def one_answer_per_prompt(held_out: list[Any]) -> list[Any]:
    """``held_out`` with the unpaired (KTO) answers of a prompt reduced to one, where the prompt first
    appears: its first desirable answer, else its first answer. Other examples are kept as they are.

    ``[Unpaired(p, "4", True), Unpaired(p, "5", False), Unpaired(q, "7", False)]`` ->
    ``[Unpaired(p, "4", True), Unpaired(q, "7", False)]``; with the ``p`` rows the other way round the
    desirable one takes the first place. Without it a prompt with a desirable and an undesirable
    answer would be asked twice in the held-out measurement.
    """
    kept: list[Any] = []
    at: dict[str, int] = {}  # a prompt's messages, written out -> its place in kept
    for example in held_out:
        if not isinstance(example, UnpairedPreferenceExample):
            kept.append(example)
            continue
        key = repr(example.prompt)
        if key not in at:
            at[key] = len(kept)
            kept.append(example)
        elif example.desirable and not kept[at[key]].desirable:
            kept[at[key]] = example
    return kept


def as_eval_conversation(example: Any) -> Optional[Conversation]:
    """The conversation evaluation by generation reads for one held-out example (None: none).

    ``PreferenceExample([user "2+2?"], [assistant "4"], [assistant "5"], reference="4")`` ->
    ``Conversation([user "2+2?", assistant "4"], reference="4")``;
    ``PromptExample([user "2+2?"], reference="4")`` -> ``Conversation([user "2+2?"], reference="4")``.
    """
    if isinstance(example, Conversation):
        return example
    if isinstance(example, PreferenceExample):
        return Conversation(example.prompt + example.chosen, example.reference, example.where)
    if isinstance(example, UnpairedPreferenceExample):
        completion = example.completion if example.desirable else []
        if not completion and example.reference is None:
            return None
        return Conversation(example.prompt + completion, example.reference, example.where)
    if isinstance(example, PromptExample) and example.reference is not None:
        return Conversation(list(example.prompt), example.reference, example.where)
    return None
