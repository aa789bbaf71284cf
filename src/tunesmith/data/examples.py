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


Example = Conversation | TextExample | ClassificationExample | Seq2SeqExample | TokenizedExample

# The kind of example each format produces, by the name ``formats`` and ``tokenize`` use for it.
EXAMPLE_KINDS: dict[type, str] = {
    Conversation: "conversation",
    TextExample: "text",
    ClassificationExample: "classification",
    Seq2SeqExample: "seq2seq",
    TokenizedExample: "tokenized",
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
    if cls is Conversation:
        data["messages"] = [Message(**m) for m in data["messages"]]
    return cls(**data)
