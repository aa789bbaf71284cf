"""Conversations -> ``input_ids`` and ``labels``.

Labels are unshifted: the same length as ``input_ids``, the token id where the token is trained
and -100 where it is not. The model shifts them (token t predicts token t+1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.examples import Conversation
from tunesmith.data.templates import render_segments

IGNORE_INDEX = -100


@dataclass
class TokenizeStats:
    """What tokenizing did to the examples; every dropped example is counted by reason."""

    kept: int = 0
    dropped_too_long: int = 0
    dropped_no_trained_token: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    longest: int = 0
    examples_dropped: list[str] = field(default_factory=list)  # where the first few came from

    def summary(self) -> str:
        return (
            f"{self.kept} examples, {self.tokens} tokens ({self.trained_tokens} trained), longest {self.longest}; "
            f"dropped {self.dropped_too_long} too long, {self.dropped_no_trained_token} with no trained token"
        )


def tokenize_conversation(tokenizer: Any, conversation: Conversation, loss_on: str) -> dict[str, list[int]]:
    """``{"input_ids": [...], "labels": [...]}`` for one conversation (no truncation here)."""
    input_ids: list[int] = []
    labels: list[int] = []
    for text, trained in render_segments(tokenizer, conversation, loss_on):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids += ids
        labels += ids if trained else [IGNORE_INDEX] * len(ids)
    return {"input_ids": input_ids, "labels": labels}


def tokenize_all(
    tokenizer: Any, conversations: list[Conversation], loss_on: str, max_length: int, desc: str = "Tokenizing"
) -> tuple[list[dict[str, list[int]]], TokenizeStats]:
    """Tokenize every conversation; drop (and count) those too long or with nothing trained."""
    from tqdm.auto import tqdm

    stats = TokenizeStats()
    out = []
    for conv in tqdm(conversations, desc=desc, unit="ex", leave=False, mininterval=0.5):
        example = tokenize_conversation(tokenizer, conv, loss_on)
        n = len(example["input_ids"])
        if n > max_length:
            stats.dropped_too_long += 1
            stats.examples_dropped.append(f"{conv.where} ({n} tokens > data.max_length={max_length})")
            continue
        trained = sum(1 for t in example["labels"] if t != IGNORE_INDEX)
        if trained == 0:
            stats.dropped_no_trained_token += 1
            stats.examples_dropped.append(f"{conv.where} (no trained token)")
            continue
        stats.kept += 1
        stats.tokens += n
        stats.trained_tokens += trained
        stats.longest = max(stats.longest, n)
        out.append(example)
    return out, stats
