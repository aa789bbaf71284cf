"""Preference, unpaired and prompt examples -> the token rows preference and RL trainers read.

The rows (labels unshifted, -100 where nothing is trained, as in ``tokenize.py``):

- ``PreferenceExample``, causal LM: ``{"chosen_input_ids", "chosen_labels", "rejected_input_ids",
  "rejected_labels"}``. Each side is ``Conversation(prompt + completion)`` rendered and tokenized
  exactly as SFT renders it (the same template segments); every prompt token is -100 and the
  completion's tokens, the template's end-of-turn token included, are trained.
- ``PreferenceExample``, sequence classification (a reward model): ``{"chosen_input_ids",
  "rejected_input_ids"}``, the same ids without labels.
- ``UnpairedPreferenceExample`` (KTO): ``{"input_ids", "labels", "desirable": 0 | 1}``.
- ``PromptExample`` (GRPO): ``{"prompt_ids", "reference": str | None}``; ``prompt_ids`` is the
  prompt rendered with the generation prompt (the assistant header), the text inference feeds the
  model (``ChatTemplate.render_prompt``), tokenized the way inference tokenizes it.

Lengths: ``data.max_length`` applies to each side of a pair. ``drop`` leaves a pair out when
either side is too long; ``truncate_end`` cuts the end of each side that is too long;
``truncate_prompt`` cuts the same earliest prompt tokens from both sides (a leading BOS is kept),
so both keep their whole completion and share one prompt. A prompt row is cut from the left under
``truncate_prompt`` and ``truncate_end`` alike (cutting its end would lose the assistant header).
``data.min_length`` applies to each side. ``TokenizeStats`` counts a pair as one example; its
tokens and trained tokens are those of both sides, and ``longest`` is the longest side.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Optional

from tunesmith.config.vocabulary import Task
from tunesmith.data.examples import (
    Conversation,
    Message,
    PreferenceExample,
    PromptExample,
    UnpairedPreferenceExample,
)
from tunesmith.data.truncation import IGNORE_INDEX, fit_to_length
from tunesmith.errors import DataError

if TYPE_CHECKING:
    from tunesmith.data.tokenize import TokenizeStats

PREFERENCE_KINDS = ("preference", "unpaired_preference", "prompt")
Side = tuple[list[int], list[int], int]  # (input_ids, labels, trained tokens)


def completion_conversation(prompt: list[Message], completion: list[Message], where: str,
                            reference: Optional[str] = None) -> Conversation:
    """``Conversation(prompt + completion)`` with only the completion's assistant turns trained.

    ``[user "2+2?"]``, ``[assistant "4"]`` -> ``Conversation([user "2+2?" (train=False),
    assistant "4" (train=True)])``: the same tokens and labels SFT gives under ``data.loss_on=assistant``.
    """
    head = [dataclasses.replace(m, train=False) for m in prompt]
    tail = [dataclasses.replace(m, train=m.role == "assistant") for m in completion]
    return Conversation(head + tail, reference=reference, where=where)


def tokenize_preference(job: Any, example: Any, stats: "TokenizeStats") -> Optional[dict[str, Any]]:
    """The row of one preference, unpaired or prompt example (None: left out, and counted in ``stats``).

    ``job`` is ``tokenize._Job`` (tokenizer, settings, template, batched ``encode``).
    """
    if isinstance(example, PromptExample):
        return _prompt_row(job, example, stats)
    if isinstance(example, UnpairedPreferenceExample):
        ids, labels, trained = _side(job, completion_conversation(example.prompt, example.completion, example.where))
        row = job._fit_causal(ids, labels, example.where, stats, trained)
        return None if row is None else {**row, "desirable": int(example.desirable)}
    if not isinstance(example, PreferenceExample):
        raise TypeError(f"not a preference example: {type(example).__name__}")
    chosen = _side(job, completion_conversation(example.prompt, example.chosen, example.where))
    rejected = _side(job, completion_conversation(example.prompt, example.rejected, example.where))
    fitted = fit_pair(job, [chosen, rejected], example.where, stats)
    if fitted is None:
        return None
    (c_ids, c_labels), (r_ids, r_labels) = fitted
    if job.task == Task.SEQUENCE_CLASSIFICATION:
        return {"chosen_input_ids": c_ids, "rejected_input_ids": r_ids}
    return {"chosen_input_ids": c_ids, "chosen_labels": c_labels,
            "rejected_input_ids": r_ids, "rejected_labels": r_labels}


def _side(job: Any, conversation: Conversation) -> Side:
    """(input_ids, labels, trained tokens) of one conversation, through the run's template segments."""
    groups = job.template.segment_groups([conversation], "assistant", job.settings.rerendered_history)[0]
    if not groups:
        return [], [], 0
    segments = groups[-1]
    ids: list[int] = []
    labels: list[int] = []
    trained = 0
    for part, (_, is_trained) in zip(job.encode([text for text, _ in segments]), segments):
        ids += part
        labels += part if is_trained else [IGNORE_INDEX] * len(part)
        trained += len(part) if is_trained else 0
    return ids, labels, trained


Fitted = list[tuple[list[int], list[int]]]  # (input_ids, labels) of each side


def fit_pair(job: Any, sides: list[Side], where: str, stats: "TokenizeStats") -> Optional[Fitted]:
    """Both sides fitted to ``data.max_length`` by ``data.truncation`` and counted as one example.

    With ``max_length=4`` and ``truncate_prompt``, sides ``[1, 2, 3, 4, 5]`` / ``[1, 2, 3, 6]`` with
    labels ``[-100, -100, -100, 4, 5]`` / ``[-100, -100, -100, 6]`` -> ``[2, 3, 4, 5]`` / ``[2, 3, 6]``:
    one token cut from the front of both prompts.
    """
    s = job.settings
    lengths = [len(ids) for ids, _, _ in sides]
    if any(trained == 0 for _, _, trained in sides):
        return stats.drop("dropped_no_trained_token", f"{where} (a side has no trained token)")
    if min(lengths) < s.min_length:
        return stats.drop("dropped_too_short", f"{where} ({min(lengths)} tokens < data.min_length={s.min_length})")
    longest = max(lengths)
    if longest <= s.max_length:
        _keep_pair(stats, lengths, [trained for _, _, trained in sides])
        return [(ids, labels) for ids, labels, _ in sides]
    note = f"{where} (chosen {lengths[0]}, rejected {lengths[1]} tokens > data.max_length={s.max_length}"
    if s.truncation == "drop":
        return stats.drop("dropped_too_long", f"{note}; data.truncation=drop)")
    fitted = []
    for ids, labels, _ in sides:
        if s.truncation == "truncate_end":
            fitted.append(fit_to_length(ids, labels, s.max_length, "truncate_end"))
        else:  # the same number of prompt tokens off both sides, so they keep one prompt
            keep_first = 1 if job.bos and ids and ids[0] == job.tokenizer.bos_token_id else 0
            fitted.append(fit_to_length(ids, labels, len(ids) - (longest - s.max_length), "truncate_prompt",
                                        keep_first))
    if any(f.outcome == "too_long" for f in fitted):
        return stats.drop("dropped_too_long", f"{note}; the completions alone do not fit)")
    trained = [sum(1 for t in f.labels if t != IGNORE_INDEX) for f in fitted]
    if 0 in trained:
        return stats.drop("dropped_too_long", f"{note}; no trained token left after {s.truncation})")
    outcome = "truncated_end" if s.truncation == "truncate_end" else "truncated_prompt"
    stats.cut(outcome, f"{note}; cut to {len(fitted[0].input_ids)} and {len(fitted[1].input_ids)})")
    _keep_pair(stats, [len(f.input_ids) for f in fitted], trained)
    return [(f.input_ids, f.labels) for f in fitted]


def _keep_pair(stats: "TokenizeStats", lengths: list[int], trained: list[int]) -> None:
    stats.kept += 1
    stats.tokens += sum(lengths)
    stats.trained_tokens += sum(trained)
    stats.longest = max(stats.longest, *lengths)


def prompt_text(template: Any, example: PromptExample) -> str:
    """The prompt as inference renders it: chatml, ``[user "2+2?"]`` ->
    ``"<|im_start|>user\\n2+2?<|im_end|>\\n<|im_start|>assistant\\n"``."""
    try:
        return template.render_prompt(example.prompt)
    except DataError:
        raise
    except Exception as err:  # Jinja raises many types
        raise DataError(f"{example.where}: the {template.name} chat template failed: {err}") from err


def _prompt_row(job: Any, example: PromptExample, stats: "TokenizeStats") -> Optional[dict[str, Any]]:
    s, where = job.settings, example.where
    ids = job.encode([prompt_text(job.template, example)])[0]
    n = len(ids)
    if n < s.min_length:
        return stats.drop("dropped_too_short", f"{where} ({n} tokens < data.min_length={s.min_length})")
    if n > s.max_length:
        keep_first = 1 if job.bos and ids[0] == job.tokenizer.bos_token_id else 0
        if s.truncation == "drop" or s.max_length <= keep_first:
            return stats.drop("dropped_too_long", f"{where} ({n} tokens > data.max_length={s.max_length}; "
                                                  f"data.truncation={s.truncation})")
        ids = ids[:keep_first] + ids[n - (s.max_length - keep_first):]
        stats.cut("truncated_prompt", f"{where} ({n} -> {len(ids)} prompt tokens)")
    stats.keep(len(ids), 0)
    return {"prompt_ids": ids, "reference": example.reference}
