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
        answers = [m.content for m in self.messages if m.role == "assistant"]
        return answers[-1] if answers else None
