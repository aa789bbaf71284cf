"""Row formats: each turns one raw row (a dict) into a canonical ``Conversation``.

Formats are registered by name (``data.format=alpaca``); ``auto`` picks one from the columns.
A bad row raises ``DataError`` naming the file:line and the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tunesmith.data.examples import ROLES, Conversation, Message
from tunesmith.errors import DataError
from tunesmith.registry import Registry, did_you_mean


@dataclass(frozen=True)
class RowFormat:
    name: str
    parse: Callable[[dict[str, Any], str], Conversation]
    columns: tuple[str, ...]  # columns whose presence identifies the format


FORMATS: Registry[RowFormat] = Registry("data format", key="data.format")


def register_format(name: str, columns: tuple[str, ...]):
    """Decorator: ``@register_format("alpaca", ("instruction", "output"))``."""

    def wrap(fn: Callable[[dict[str, Any], str], Conversation]):
        FORMATS.register(name, RowFormat(name, fn, columns))
        return fn

    return wrap


def detect_format(row: dict[str, Any], where: str) -> str:
    """The first registered format whose identifying columns are all present."""
    for name, fmt in FORMATS.items():
        if all(c in row for c in fmt.columns):
            return name
    expected = "; ".join(f"{n}: {', '.join(f.columns)}" for n, f in FORMATS.items())
    raise DataError(
        f"{where}: cannot tell the data format from the columns {sorted(row)}; expected one of "
        f"[{expected}] or set data.format"
    )


def _text(row: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None:
        if required:
            hint = did_you_mean(key, list(row))
            raise DataError(f"{where}: missing column '{key}'.{hint} Columns present: {sorted(row)}")
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise DataError(f"{where}: column '{key}' must be text, got {type(value).__name__}: {value!r:.80}")
    return value


@register_format("alpaca", ("instruction", "output"))
def from_alpaca(row: dict[str, Any], where: str) -> Conversation:
    """``{"instruction": "Add", "input": "2 and 3", "output": "5"}`` ->
    user "Add\\n\\n2 and 3", assistant "5" (an optional ``system`` column becomes a system turn)."""
    instruction = _text(row, "instruction", where)
    extra = _text(row, "input", where, required=False)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages = []
    if row.get("system"):
        messages.append(Message("system", _text(row, "system", where)))
    messages += [Message("user", user), Message("assistant", _text(row, "output", where))]
    return Conversation(messages, reference=_reference(row), where=where)


@register_format("messages", ("messages",))
def from_messages(row: dict[str, Any], where: str) -> Conversation:
    """``{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}``.
    A message may carry ``"train": false`` to keep it out of the loss."""
    raw = row.get("messages")
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{where}: column 'messages' must be a non-empty list of {{role, content}} objects")
    messages = []
    for i, m in enumerate(raw):
        at = f"{where}: messages[{i}]"
        if not isinstance(m, dict):
            raise DataError(f"{at} must be an object with 'role' and 'content', got {m!r:.80}")
        role = m.get("role")
        if role not in ROLES:
            raise DataError(f"{at}: role {role!r} is not allowed.{did_you_mean(str(role), ROLES)} Allowed: {', '.join(ROLES)}")
        content = m.get("content")
        if not isinstance(content, str):
            raise DataError(f"{at}: 'content' must be text, got {type(content).__name__}")
        train = m.get("train")
        if train is not None and not isinstance(train, bool):
            raise DataError(f"{at}: 'train' must be true or false, got {train!r}")
        messages.append(Message(role, content, train))
    if not any(m.role == "assistant" for m in messages):
        raise DataError(f"{where}: the conversation has no assistant message, so nothing can be trained")
    return Conversation(messages, reference=_reference(row), where=where)


def _reference(row: dict[str, Any]) -> str | None:
    value = row.get("answer")
    return None if value is None else str(value)


def to_conversations(rows: list[tuple[dict[str, Any], str]], fmt: str) -> list[Conversation]:
    """Parse ``(row, where)`` pairs with format ``fmt`` (``auto``: detected from the first row)."""
    if not rows:
        return []
    name = detect_format(rows[0][0], rows[0][1]) if fmt == "auto" else fmt
    parse = FORMATS.get(name).parse
    out = []
    for row, where in rows:
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object (a mapping of columns), got {type(row).__name__}")
        out.append(parse(row, where))
    return out
