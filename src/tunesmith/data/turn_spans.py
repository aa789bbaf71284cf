"""Assistant spans of a conversation from ONE rendering, the same spans the growing-prefix method
(``ChatTemplate.cuts_by_prefix``) finds with two renderings per assistant turn.

The template text around the messages depends on the sequence of roles, not on what the
messages say, for every template that inserts a message's content as it is (chatml, alpaca,
plain, continuation, tags, most models' own) or trimmed (llama3). So the growing-prefix method
runs once per role sequence on a stand-in conversation whose contents are markers
(``"\\ue000" + index + "\\ue001"``, private-use characters): that gives a *plan*, the cuts with
markers where the contents go. A real conversation is rendered once, and the plan applies when
the rendering equals the plan's full text with the markers replaced by the contents (as written,
or all stripped of surrounding whitespace, as Jinja's ``trim`` does). Each answer cut is then
split after its first EOS exactly as the growing-prefix method splits it.

Where the rendering differs (a template that rewrites content, such as Qwen3 dropping earlier
``<think>`` blocks, or one that depends on the date), or a content holds a marker character, the
conversation goes through the growing-prefix method instead: slower, never different.
``tests/data/test_turn_spans.py`` checks both methods give identical segments for every shipped
template on random conversations.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from tunesmith.data.examples import Conversation, Message
from tunesmith.errors import DataError

if TYPE_CHECKING:
    from tunesmith.data.templates import ChatTemplate, Cut, Segment

logger = logging.getLogger(__name__)

_OPEN, _CLOSE = "\ue000", "\ue001"
_MARKER = re.compile(f"{_OPEN}(\\d+){_CLOSE}")


def _marker(index: int) -> str:
    return f"{_OPEN}{index}{_CLOSE}"


@dataclass(frozen=True)
class Plan:
    """The cuts of one role sequence with marker slots: each cut is a tuple of pieces, a piece is
    literal text (str) or the index of the message whose content goes there (int)."""

    cuts: tuple[tuple[tuple[str | int, ...], Optional[int]], ...]
    full: tuple[str | int, ...]  # the whole rendering, as pieces

    @staticmethod
    def pieces(text: str) -> Optional[tuple[str | int, ...]]:
        """``"a\\ue0000\\ue001b"`` -> ``("a", 0, "b")``; None when a marker is cut in half."""
        parts = _MARKER.split(text)
        out: list[str | int] = []
        for k, part in enumerate(parts):
            if k % 2:
                out.append(int(part))
            elif part:
                if _OPEN in part or _CLOSE in part:
                    return None
                out.append(part)
        return tuple(out)


def _fill(pieces: tuple[str | int, ...], contents: list[str]) -> str:
    return "".join(p if isinstance(p, str) else contents[p] for p in pieces)


class TurnSpans:
    """Finds the cuts of conversations for one chat template, one rendering per conversation."""

    def __init__(self, template: "ChatTemplate") -> None:
        self.template = template
        self.plans: dict[tuple[str, ...], Optional[Plan]] = {}  # None: no plan for these roles
        self.fallbacks = 0  # conversations split by the growing-prefix method

    def plan(self, roles: tuple[str, ...]) -> Optional[Plan]:
        """The plan of a role sequence (made on first use), or None when it has none."""
        if roles not in self.plans:
            self.plans[roles] = self._make_plan(roles)
        return self.plans[roles]

    def _make_plan(self, roles: tuple[str, ...]) -> Optional[Plan]:
        stand_in = Conversation([Message(role, _marker(i)) for i, role in enumerate(roles)], where="plan")
        try:
            cuts = self.template.cuts_by_prefix(stand_in, split_answers=False)
            full = Plan.pieces(self.template.render(stand_in.messages, False))
        except Exception:  # DataError, Jinja errors: the real conversation reports them, through the fallback
            return None
        pieces = [Plan.pieces(text) for text, _ in cuts]
        if full is None or any(p is None for p in pieces):
            return None
        return Plan(tuple((p, turn) for p, (_, turn) in zip(pieces, cuts)), full)  # type: ignore[misc]

    def cuts(self, conversation: Conversation, rendered: Optional[str]) -> list["Cut"]:
        """The cuts of one conversation, given its full rendering (None: rendering failed)."""
        messages = conversation.messages
        plan = self.plan(tuple(m.role for m in messages)) if rendered is not None else None
        contents = [m.content for m in messages]
        if plan is not None and not any(_OPEN in c or _CLOSE in c for c in contents):
            if _fill(plan.full, contents) != rendered:
                contents = [c.strip() for c in contents]
                if _fill(plan.full, contents) != rendered:
                    plan = None
        else:
            plan = None
        if plan is None:
            self._fell_back()
            return self.template.cuts_by_prefix(conversation)
        from tunesmith.data.templates import _split_answer

        out: list["Cut"] = []
        for pieces, turn in plan.cuts:
            text = _fill(pieces, contents)
            if turn is None:
                out.append((text, None))
            else:
                trained, rest = _split_answer(text, self.template.eos)
                out += [(trained, turn), (rest, None)]
        return out

    def segments_many(self, conversations: list[Conversation], loss_on: str) -> list[list["Segment"]]:
        """``ChatTemplate.render_segments`` of each conversation; one batched rendering call."""
        return [groups[0] for groups in self.segment_groups(conversations, loss_on)]

    def segment_groups(self, conversations: list[Conversation], loss_on: str,
                       rerendered: str = "error") -> list[list[list["Segment"]]]:
        """See ``ChatTemplate.segment_groups``."""
        from tunesmith.data.templates import NotGrowingPrefix, segments_from_cuts

        rendered = self.template.render_many([c.messages for c in conversations]) if conversations else []
        out = []
        for c, r in zip(conversations, rendered):
            try:
                out.append([segments_from_cuts(c, self.cuts(c, r), loss_on)])
            except NotGrowingPrefix:
                if rerendered == "error":
                    raise
                out.append(self._rerendered(c, loss_on, rerendered))
        return out

    def _rerendered(self, conversation: Conversation, loss_on: str, mode: str) -> list[list["Segment"]]:
        """``last_turn``: the conversation with only its last answer located (earlier answers are
        prompt). ``per_turn``: one example per answer that ``loss_on`` (or the message's ``train``)
        trains, each the conversation up to that answer with only that answer located."""
        from tunesmith.data.templates import segments_from_cuts

        if mode == "last_turn":
            return [segments_from_cuts(conversation, self.template.cuts_of_last_turn(conversation), loss_on)]
        messages = conversation.messages
        turns = [i for i, m in enumerate(messages) if m.role == "assistant"]
        groups = []
        for i in turns:
            train = messages[i].train
            if not (train if train is not None else (loss_on in ("all", "assistant") or i == turns[-1])):
                continue
            part = Conversation(messages[: i + 1], where=f"{conversation.where} (answer {turns.index(i) + 1})")
            groups.append(segments_from_cuts(part, self.template.cuts_of_last_turn(part), loss_on))
        return groups

    def _fell_back(self) -> None:
        self.fallbacks += 1
        if self.fallbacks == 1:
            logger.info("the %s chat template does not insert some message contents as written; those "
                        "conversations are split by rendering each turn's prefix (slower, same result)",
                        self.template.name)


def spans_for(template: "ChatTemplate") -> TurnSpans:
    """The ``TurnSpans`` of a template, made once and kept on it."""
    spans = template.__dict__.get("_turn_spans")
    if spans is None:
        spans = template.__dict__["_turn_spans"] = TurnSpans(template)
    return spans
