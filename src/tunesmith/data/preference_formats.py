"""Row formats for preference and reinforcement fine-tuning: paired preferences, unpaired
(desirable / undesirable) completions and prompts alone. Registered into ``formats.FORMATS``.

- ``preference``: ``prompt`` (optional), ``chosen``, ``rejected`` -> ``PreferenceExample``;
- ``kto``: ``prompt``, ``completion``, ``label`` (true/false) -> ``UnpairedPreferenceExample``;
- ``prompt_only``: ``prompt`` -> ``PromptExample``.

Each of ``prompt`` / ``chosen`` / ``rejected`` / ``completion`` is text or a list of
``{role, content}`` messages (TRL's conversational shapes). Text becomes one message: a user
turn for a prompt, an assistant turn for a completion. Without a ``prompt`` column, ``chosen``
and ``rejected`` must be message lists that begin with the same turns (TRL's implicit prompt):
the shared leading turns are the prompt, the differing tails the completions. Optional columns:
``system`` (a system turn before the prompt) and ``answer`` / ``reference`` (``solution`` too for
prompts): the expected final answer, kept as ``reference`` for exact-match evaluation and rewards.
"""

from __future__ import annotations

from typing import Any, Optional

from tunesmith.data.chat_rows import check_turns, read_messages
from tunesmith.data.examples import Message, PreferenceExample, PromptExample, UnpairedPreferenceExample
from tunesmith.data.formats import ParseContext, register_format
from tunesmith.data.labels import LABEL
from tunesmith.data.row_fields import BAD_LABEL, BAD_TURNS, EMPTY, WRONG_TYPE, missing, read_text
from tunesmith.errors import DataError

SAME_PAIR = "identical pair"  # the reason a row is counted under with data.on_bad_rows=skip
NO_SHARED_PROMPT = "no shared prompt"
REFERENCE_COLUMNS = ("answer", "reference")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def read_turns(row: dict[str, Any], key: str, where: str, role: str) -> list[Message]:
    """``row[key]`` as messages: text is one ``role`` message, a list is read as ``{role, content}`` turns.

    ``{"chosen": "4"}``, ``"chosen"``, ``"assistant"`` -> ``[Message("assistant", "4")]``;
    ``{"prompt": [{"role": "user", "content": "2+2?"}]}``, ``"prompt"`` -> ``[Message("user", "2+2?")]``.
    """
    value = row.get(key)
    if isinstance(value, list):
        return read_messages(row, key, where, "role", "content", check=False)
    if isinstance(value, dict):
        raise DataError(f"{where}: column '{key}' must be text or a list of {{role, content}} messages, got an "
                        f"object: {value!r:.80}", reason=WRONG_TYPE)
    return [Message(role, read_text(row, key, where))]


def read_reference(row: dict[str, Any], where: str, columns: tuple[str, ...] = REFERENCE_COLUMNS) -> Optional[str]:
    """The expected final answer: the first of ``columns`` present; ``{"answer": 30}`` -> ``"30"``."""
    for key in columns:
        if row.get(key) is not None:
            return read_text(row, key, where)
    return None


def _with_system(row: dict[str, Any], prompt: list[Message], where: str) -> list[Message]:
    system = read_text(row, "system", where, required=False)
    if system.strip() and not (prompt and prompt[0].role == "system"):
        return [Message("system", system)] + prompt
    return prompt


def _same(a: list[Message], b: list[Message]) -> bool:
    return [(m.role, m.content) for m in a] == [(m.role, m.content) for m in b]


def split_implicit_prompt(chosen: list[Message], rejected: list[Message],
                          where: str) -> tuple[list[Message], list[Message], list[Message]]:
    """TRL's implicit prompt: the leading turns both lists share, and the two differing tails.

    ``[user "2+2?", assistant "4"]``, ``[user "2+2?", assistant "5"]`` ->
    ``([user "2+2?"], [assistant "4"], [assistant "5"])``.
    """
    if _same(chosen, rejected):
        raise DataError(f"{where}: chosen and rejected are the same text; a pair must differ", reason=SAME_PAIR)
    shared = 0
    while (shared < min(len(chosen), len(rejected)) and chosen[shared].role == rejected[shared].role
           and chosen[shared].content == rejected[shared].content):
        shared += 1
    if shared == 0:
        raise DataError(f"{where}: chosen and rejected share no leading turns, so the prompt cannot be told "
                        "apart from the completions; add a 'prompt' column, or begin both with the same prompt "
                        "turns (TRL's implicit-prompt shape)", reason=NO_SHARED_PROMPT)
    for key, side in (("chosen", chosen), ("rejected", rejected)):
        if len(side) == shared:
            raise DataError(f"{where}: {key} is the shared prompt alone (its {shared} turns all begin the other "
                            "side too), so its completion is empty; each side needs its own assistant turn",
                            reason=EMPTY)
    return chosen[:shared], chosen[shared:], rejected[shared:]


@register_format("preference", ("chosen", "rejected"), optional=("prompt", "system") + REFERENCE_COLUMNS,
                 priority=6, kind="preference")
def from_preference(row: dict[str, Any], where: str, context: ParseContext) -> PreferenceExample:
    """``{"prompt": "2+2?", "chosen": "4", "rejected": "5", "answer": "4"}`` ->
    ``PreferenceExample([user "2+2?"], [assistant "4"], [assistant "5"], reference="4")``.

    Without ``prompt``: ``{"chosen": [user "2+2?", assistant "4"], "rejected": [user "2+2?", assistant "5"]}``
    gives the same example (the shared leading turns are the prompt).
    """
    for key in ("chosen", "rejected"):
        if row.get(key) is None:
            if key in row:
                raise DataError(f"{where}: column '{key}' is null; it must be text or a list of messages",
                                reason=EMPTY)
            raise missing(row, key, where)
    if row.get("prompt") is None:
        if not (isinstance(row["chosen"], list) and isinstance(row["rejected"], list)):
            raise DataError(f"{where}: a preference row without a 'prompt' column needs 'chosen' and 'rejected' as "
                            "lists of {role, content} messages that begin with the same prompt turns; with text "
                            "completions, add a 'prompt' column", reason=WRONG_TYPE)
        prompt, chosen, rejected = split_implicit_prompt(read_turns(row, "chosen", where, "assistant"),
                                                         read_turns(row, "rejected", where, "assistant"), where)
    else:
        prompt = read_turns(row, "prompt", where, "user")
        chosen = read_turns(row, "chosen", where, "assistant")
        rejected = read_turns(row, "rejected", where, "assistant")
        if _same(chosen, rejected):
            raise DataError(f"{where}: chosen and rejected are the same text; a pair must differ", reason=SAME_PAIR)
    prompt = _with_system(row, prompt, where)
    check_turns(prompt + chosen, where, "prompt + chosen")
    check_turns(prompt + rejected, where, "prompt + rejected")
    return PreferenceExample(prompt, chosen, rejected, read_reference(row, where), where)


def read_desirable(row: dict[str, Any], where: str) -> bool:
    """A KTO label: ``true`` / ``false``, ``1`` / ``0`` or the text ``"true"`` / ``"false"`` (also
    ``"yes"`` / ``"no"``, any case). ``{"label": "True"}`` -> ``True``; ``{"label": 2}`` is an error."""
    if row.get(LABEL) is None:
        if LABEL in row:
            raise DataError(f"{where}: column '{LABEL}' is null; it must be true or false", reason=EMPTY)
        raise missing(row, LABEL, where)
    value = row[LABEL]
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise DataError(f"{where}: column '{LABEL}' must say whether the completion is desirable: true or false "
                    f"(or 1 / 0, \"true\" / \"false\"), got {value!r:.80}", reason=BAD_LABEL)


@register_format("kto", ("prompt", "completion", LABEL), optional=("system",) + REFERENCE_COLUMNS, priority=7,
                 kind="unpaired_preference")
def from_kto(row: dict[str, Any], where: str, context: ParseContext) -> UnpairedPreferenceExample:
    """``{"prompt": "2+2?", "completion": "5", "label": false}`` ->
    ``UnpairedPreferenceExample([user "2+2?"], [assistant "5"], desirable=False)``."""
    prompt = _with_system(row, read_turns(row, "prompt", where, "user"), where)
    completion = read_turns(row, "completion", where, "assistant")
    check_turns(prompt + completion, where, "prompt + completion")
    return UnpairedPreferenceExample(prompt, completion, read_desirable(row, where), read_reference(row, where),
                                     where)


@register_format("prompt_only", ("prompt",), optional=("system", "solution") + REFERENCE_COLUMNS, priority=45,
                 kind="prompt")
def from_prompt_only(row: dict[str, Any], where: str, context: ParseContext) -> PromptExample:
    """``{"prompt": "2+2?", "answer": "4"}`` -> ``PromptExample([user "2+2?"], reference="4")``.

    A message-list prompt must end with a user turn (the one the model answers).
    """
    prompt = _with_system(row, read_turns(row, "prompt", where, "user"), where)
    for i in range(1, len(prompt)):
        if prompt[i].role == prompt[i - 1].role:
            raise DataError(f"{where}: prompt[{i}] is a second '{prompt[i].role}' turn in a row; turns must "
                            "alternate between user and assistant", reason=BAD_TURNS)
    if prompt[-1].role != "user":
        raise DataError(f"{where}: prompt[{len(prompt) - 1}] is a '{prompt[-1].role}' turn, but a prompt must end "
                        "with the user turn the model answers", reason=BAD_TURNS)
    return PromptExample(prompt, read_reference(row, where, REFERENCE_COLUMNS + ("solution",)), where)
