"""Reading chat turns out of a row and checking that they make a trainable conversation.

Shared by the ``messages``, ``sharegpt`` and conversational ``prompt_completion`` formats.
"""

from __future__ import annotations

from typing import Any, Optional

from tunesmith.data.examples import ROLES, Message
from tunesmith.data.row_fields import (
    BAD_ROLE,
    BAD_TURNS,
    NO_ASSISTANT,
    WRONG_TYPE,
    missing,
    read_flag,
    read_list,
    read_text,
)
from tunesmith.errors import DataError
from tunesmith.registry import did_you_mean

# ShareGPT speaker names -> canonical roles.
ROLE_ALIASES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
_SAME = {role: role for role in ROLES}


def read_messages(
    row: dict[str, Any], key: str, where: str, role_key: str, content_key: str,
    aliases: Optional[dict[str, str]] = None, check: bool = True,
) -> list[Message]:
    """The turns in ``row[key]``.

    ``{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "train": false}]}``
    -> ``[Message("user", "Hi"), Message("assistant", "Hello", train=False)]``. ``aliases`` maps the
    file's speaker names to roles (ShareGPT: ``human`` -> user, ``gpt`` -> assistant).
    """
    aliases = aliases or _SAME
    messages = []
    for i, raw in enumerate(read_list(row, key, where, f"{{{role_key}, {content_key}}} objects")):
        at = f"{where}: {key}[{i}]"
        if not isinstance(raw, dict):
            raise DataError(f"{at} must be an object with '{role_key}' and '{content_key}', got {raw!r:.80}",
                            reason=WRONG_TYPE)
        if role_key not in raw:
            raise _missing_role(raw, role_key, content_key, at)
        speaker = raw[role_key]
        if not isinstance(speaker, str) or speaker not in aliases:  # a list or dict is no role (and unhashable)
            allowed = ", ".join(aliases)
            raise DataError(f"{at}: {role_key} {speaker!r} is not allowed.{did_you_mean(str(speaker), list(aliases))} "
                            f"Allowed: {allowed}", reason=BAD_ROLE)
        content = read_text(raw, content_key, at, kind="field")
        messages.append(Message(aliases[speaker], content, read_flag(raw, "train", at)))
    if check:
        check_turns(messages, where, key)
    return messages


def check_turns(messages: list[Message], where: str, key: str) -> None:
    """Turns must alternate (no user, user) and end with the assistant answer to train on.

    ``[user, assistant]`` passes; ``[user, user, assistant]`` and ``[user]`` raise ``DataError``.
    """
    for i in range(1, len(messages)):
        if messages[i].role == messages[i - 1].role:
            raise DataError(f"{where}: {key}[{i}] is a second '{messages[i].role}' turn in a row "
                            f"({key}[{i - 1}] is '{messages[i - 1].role}' too); turns must alternate "
                            "between user and assistant", reason=BAD_TURNS)
    if not any(m.role == "assistant" for m in messages):
        raise DataError(f"{where}: {key}: the conversation has no assistant message, so nothing can be trained",
                        reason=NO_ASSISTANT)
    if messages[-1].role != "assistant":
        raise DataError(f"{where}: {key}[{len(messages) - 1}] is a '{messages[-1].role}' turn, but a conversation "
                        "must end with an assistant turn (the answer to train on)", reason=BAD_TURNS)


def _missing_role(raw: dict[str, Any], role_key: str, content_key: str, at: str) -> DataError:
    # A messages file in ShareGPT shape (or the reverse) is a common mix-up worth naming.
    other = {"role": ("from", "sharegpt", "value"), "from": ("role", "messages", "content")}.get(role_key)
    if other and other[0] in raw:
        return DataError(f"{at}: has '{other[0]}' instead of '{role_key}'; this looks like the {other[1]} format "
                         f"({other[0]}/{other[2]}): set data.format={other[1]}", reason=BAD_ROLE)
    return missing(raw, role_key, at, kind="field")
