"""Canonical examples -> model inputs: ``input_ids`` and ``labels``, counted and fitted to length.

Labels are unshifted: the same length as ``input_ids``, the token id where the token is trained
and -100 (``IGNORE_INDEX``) where it is not. The model shifts them (token t predicts token t+1).

``tokenize_examples(tokenizer, examples, task, settings)`` is the one dispatcher:

- ``causal_lm``: a ``Conversation`` through the chat template (``data.template``), trained per
  ``data.loss_on``; a ``TextExample`` with every token trained and EOS appended; a
  ``Seq2SeqExample`` as a one-turn conversation (source asks, target answers).
- ``seq2seq``: ``input_ids`` / ``attention_mask`` from the source, ``labels`` = target + EOS (all
  trained); a ``Conversation`` gives its prompt turns as plain text and its last answer.
- ``sequence_classification``: ``tokenizer(text, text_pair, truncation=True)`` and the label id.
  Classification always cuts the end of a long text (a label still applies to a cut text).
- preference, unpaired (KTO) and prompt-only (GRPO) examples: see ``preference_tokenize.py``
  for their rows (``chosen_input_ids`` / ``rejected_input_ids`` ..., ``desirable``, ``prompt_ids``).

Every example left out or cut is counted in ``TokenizeStats`` by reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from tunesmith.config.vocabulary import Task
from tunesmith.config.schema import PromptTags
from tunesmith.data.examples import (
    EXAMPLE_KINDS,
    ClassificationExample,
    Conversation,
    Example,
    Message,
    Seq2SeqExample,
    TextExample,
    TokenizedExample,
)
from tunesmith.data.preference_tokenize import PREFERENCE_KINDS, tokenize_preference
from tunesmith.data.templates import ChatTemplate, adds_bos, check_template_name, seq2seq_source, template_named
from tunesmith.data.truncation import IGNORE_INDEX, TRUNCATIONS, fit_to_length
from tunesmith.errors import ConfigError, DataError

__all__ = ["ExampleTokenizer", "IGNORE_INDEX", "TASKS", "TokenizeSettings", "TokenizeStats", "tokenize_all", "tokenize_conversation",
           "tokenize_examples", "tokenize_text"]

TASKS = ("causal_lm", "seq2seq", "sequence_classification")
LOSS_ON = ("all", "assistant", "last_assistant")
RERENDERED = ("error", "per_turn", "last_turn")
NOTED = 20  # examples named in the stats per list; the counts are always exact
BATCH = 256  # examples per batched rendering and tokenizer call
# Which example kinds each task can tokenize (seq2seq data can train a causal LM as question -> answer).
ACCEPTS = {
    "causal_lm": ("conversation", "text", "seq2seq", "tokenized", "preference", "unpaired_preference", "prompt"),
    "seq2seq": ("seq2seq", "conversation"),
    "sequence_classification": ("classification", "preference"),  # preference: a reward model
}


@dataclass(frozen=True)
class TokenizeSettings:
    """The ``data.*`` keys tokenizing reads; ``TokenizeSettings.from_config(cfg.data)``."""

    loss_on: str = "assistant"
    max_length: int = 512  # tokens per example (per source and per target for seq2seq)
    truncation: str = "drop"  # drop | truncate_end | truncate_prompt
    min_length: int = 0  # examples with fewer tokens are left out
    template: Optional[str] = None  # None: the tokenizer's own chat template (see data/templates.py)
    tags: PromptTags = field(default_factory=PromptTags)
    rerendered_history: str = "error"  # error | per_turn | last_turn (see ChatTemplate.segment_groups)

    def __post_init__(self) -> None:
        if self.loss_on not in LOSS_ON:
            raise ConfigError(f"data.loss_on: {self.loss_on!r} is not allowed; choose one of {', '.join(LOSS_ON)}")
        if self.truncation not in TRUNCATIONS:
            raise ConfigError(f"data.truncation: {self.truncation!r} is not allowed; "
                              f"choose one of {', '.join(TRUNCATIONS)}")
        if not isinstance(self.max_length, int) or self.max_length < 1:
            raise ConfigError(f"data.max_length: must be a positive number of tokens, got {self.max_length!r}")
        if not isinstance(self.min_length, int) or not 0 <= self.min_length <= self.max_length:
            raise ConfigError(f"data.min_length: must be between 0 and data.max_length={self.max_length}, "
                              f"got {self.min_length!r}")
        check_template_name(self.template)
        if self.rerendered_history not in RERENDERED:
            raise ConfigError(f"data.rerendered_history: {self.rerendered_history!r} is not allowed; choose one of "
                              f"{', '.join(RERENDERED)}")

    @classmethod
    def from_config(cls, cfg: Any) -> "TokenizeSettings":
        """Read the fields from a ``DataConfig`` (or anything with those attributes)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls) if hasattr(cfg, f.name)})


@dataclass
class TokenizeStats:
    """What tokenizing did to the examples; every dropped or cut example is counted by reason."""

    kept: int = 0
    dropped_too_long: int = 0  # also: a cut that left no trained token
    dropped_too_short: int = 0
    dropped_no_trained_token: int = 0
    truncated_end: int = 0
    truncated_prompt: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    longest: int = 0
    examples_dropped: list[str] = field(default_factory=list)  # where the first few came from, and why
    examples_truncated: list[str] = field(default_factory=list)

    @property
    def truncated(self) -> int:
        return self.truncated_end + self.truncated_prompt

    @property
    def dropped(self) -> int:
        return self.dropped_too_long + self.dropped_too_short + self.dropped_no_trained_token

    def summary(self) -> str:
        """``"10 examples, 812 tokens (301 trained), longest 97; dropped 1 too long, 0 too short,
        0 with no trained token; truncated 2 (2 at the end, 0 in the prompt)"``."""
        return (
            f"{self.kept} examples, {self.tokens} tokens ({self.trained_tokens} trained), longest {self.longest}; "
            f"dropped {self.dropped_too_long} too long, {self.dropped_too_short} too short, "
            f"{self.dropped_no_trained_token} with no trained token; truncated {self.truncated} "
            f"({self.truncated_end} at the end, {self.truncated_prompt} in the prompt)"
        )

    def drop(self, reason: str, note: str) -> None:
        """Count a left-out example under ``reason`` (a field name); returns None, so a tokenizer
        can ``return stats.drop(...)``."""
        setattr(self, reason, getattr(self, reason) + 1)
        if len(self.examples_dropped) < NOTED:
            self.examples_dropped.append(note)

    def cut(self, outcome: str, note: str) -> None:
        """Count a truncated example under ``outcome`` (``truncated_end`` or ``truncated_prompt``)."""
        setattr(self, outcome, getattr(self, outcome) + 1)
        if len(self.examples_truncated) < NOTED:
            self.examples_truncated.append(note)

    def keep(self, length: int, trained: int) -> None:
        """Count one kept example of ``length`` tokens, ``trained`` of them with labels."""
        self.kept += 1
        self.tokens += length
        self.trained_tokens += trained
        self.longest = max(self.longest, length)


def tokenize_conversation(
    tokenizer: Any, conversation: Conversation, loss_on: str, template: Optional[ChatTemplate] = None
) -> dict[str, list[int]]:
    """``{"input_ids": [...], "labels": [...]}`` for one conversation (no length limit here).

    chatml, loss_on=assistant: ``[user "2+2?", assistant "4"]`` -> the ids of
    ``"<|im_start|>user\\n2+2?<|im_end|>\\n<|im_start|>assistant\\n4<|im_end|>\\n"`` with labels -100
    except on ``4<|im_end|>``.
    """
    template = template or template_named(tokenizer)
    input_ids: list[int] = []
    labels: list[int] = []
    for text, trained in template.render_segments(conversation, loss_on):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids += ids
        labels += ids if trained else [IGNORE_INDEX] * len(ids)
    return {"input_ids": input_ids, "labels": labels}


def tokenize_text(tokenizer: Any, example: TextExample, bos: Optional[bool] = None) -> dict[str, list[int]]:
    """``TextExample("Once upon")`` -> ids of ``"Once upon"`` + EOS, all trained; BOS first (not
    trained: nothing predicts it) when the tokenizer adds one (``bos=None``: ask the tokenizer)."""
    ids = tokenizer(example.text, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    labels = list(ids)
    if adds_bos(tokenizer) if bos is None else bos:
        ids, labels = [tokenizer.bos_token_id] + ids, [IGNORE_INDEX] + labels
    return {"input_ids": ids, "labels": labels}


def tokenize_examples(
    tokenizer: Any, examples: list[Example], task: Optional[str] = None, settings: Any = None,
    desc: str = "Tokenizing", template: Optional[ChatTemplate] = None, progress: bool = True,
) -> tuple[list[dict[str, Any]], TokenizeStats]:
    """Tokenize every example for ``task`` (None: the task the first example's kind is for, ``task_of``).

    ``settings`` is a ``TokenizeSettings`` or a ``DataConfig``; ``template`` overrides the one
    ``settings.template`` names. Returns the kept rows and the counts.
    """
    from tqdm.auto import tqdm

    from tunesmith.config.logs import show_progress

    if not isinstance(settings, TokenizeSettings):
        settings = TokenizeSettings() if settings is None else TokenizeSettings.from_config(settings)
    stats = TokenizeStats()
    if not examples:
        return [], stats
    task = _task_for(examples[0], task)
    job = _Job(tokenizer, settings, task, template)
    rows = []
    with tqdm(total=len(examples), desc=desc, unit="ex", leave=False, mininterval=0.5,
              disable=not (progress and show_progress())) as bar:
        for start in range(0, len(examples), BATCH):
            chunk = examples[start:start + BATCH]
            rows += [row for row in job.tokenize_many(chunk, stats) if row is not None]
            bar.update(len(chunk))
    return rows, stats


class ExampleTokenizer:
    """``tokenize_examples`` for examples that come in pieces (a stream): one template and tokenizer
    set-up for all of them, the same rows for each example as one call over all of them gives.

    Example:
        ``job = ExampleTokenizer(tokenizer, "causal_lm", TokenizeSettings(max_length=64))``, then
        ``job(examples[:64], stats) + job(examples[64:], stats)`` equals ``tokenize_examples(...)[0]``.
    """

    def __init__(self, tokenizer: Any, task: str, settings: TokenizeSettings,
                 template: Optional[ChatTemplate] = None) -> None:
        self.tokenizer, self.task, self.settings, self.template = tokenizer, task, settings, template
        self._job: Optional[_Job] = None

    def __call__(self, examples: list[Example], stats: TokenizeStats) -> list[dict[str, Any]]:
        """The kept rows of ``examples``, in order; dropped and cut ones are counted in ``stats``."""
        if not examples:
            return []
        if self._job is None:  # the task of "auto" is decided by the first example, as tokenize_examples does
            self._job = _Job(self.tokenizer, self.settings, _task_for(examples[0], self.task), self.template)
        return [row for row in self._job.tokenize_many(examples, stats) if row is not None]


def tokenize_all(
    tokenizer: Any, conversations: list[Conversation], loss_on: str, max_length: int, desc: str = "Tokenizing"
) -> tuple[list[dict[str, list[int]]], TokenizeStats]:
    """Conversations with the tokenizer's own template, too-long ones dropped (the defaults)."""
    settings = TokenizeSettings(loss_on=loss_on, max_length=max_length)
    return tokenize_examples(tokenizer, conversations, "causal_lm", settings, desc)


def task_of(example: Example) -> str:
    """The task an example's kind is written for: ``ClassificationExample`` -> ``sequence_classification``,
    ``Seq2SeqExample`` -> ``seq2seq``, anything else -> ``causal_lm``."""
    by_kind = {"classification": Task.SEQUENCE_CLASSIFICATION, "seq2seq": Task.SEQ2SEQ}
    return by_kind.get(EXAMPLE_KINDS[type(example)], Task.CAUSAL_LM).value


def _task_for(example: Example, task: Optional[str]) -> str:
    if task is None:
        return task_of(example)
    if task not in TASKS:
        raise ConfigError(f"model.task: {task!r} is not allowed; choose one of auto, {', '.join(TASKS)}")
    return task


class _Job:
    """The per-run state of ``tokenize_examples``: settings, template (resolved on first use), BOS."""

    def __init__(self, tokenizer: Any, settings: TokenizeSettings, task: str, template: Optional[ChatTemplate]):
        self.tokenizer, self.settings, self.task = tokenizer, settings, task
        self._template = template
        self.bos = adds_bos(tokenizer)
        self._backend: Any = None  # the batched Rust encoder, False when it is not used (see encode)

    @property
    def template(self) -> ChatTemplate:
        if self._template is None:  # resolved late: classification needs no chat template
            self._template = template_named(self.tokenizer, self.settings.template, self.settings.tags)
        return self._template

    def tokenize_many(self, examples: list[Example], stats: TokenizeStats) -> list[Optional[dict[str, Any]]]:
        """``tokenize`` of each example, in order; causal-LM conversations are rendered and
        tokenized in batches (each segment still tokenized on its own, as ``tokenize_conversation``)."""
        conversations: dict[int, Conversation] = {}
        for k, example in enumerate(examples):
            conversation = self._causal_conversation(example)
            if conversation is not None:
                conversations[k] = conversation
        encoded: dict[int, list[tuple[list[int], list[int], int]]] = {}
        if conversations:
            groups, segment_ids = self.segment_ids(list(conversations.values()))
            ids = iter(segment_ids)
            for k, group in zip(conversations, groups):
                encoded[k] = []
                for segs in group:  # one example per segment list (several with rerendered_history=per_turn)
                    input_ids: list[int] = []
                    labels: list[int] = []
                    n_trained = 0
                    for _, trained in segs:
                        part = next(ids)
                        input_ids += part
                        if trained:
                            labels += part
                            n_trained += len(part)
                        else:
                            labels += [IGNORE_INDEX] * len(part)
                    encoded[k].append((input_ids, labels, n_trained))
        out = []
        for k, example in enumerate(examples):
            if k not in encoded:
                out.append(self.tokenize(example, stats))
            elif not encoded[k]:  # per_turn, and no answer is trained
                out.append(self._fit_causal([], [], example.where, stats, 0))
            else:
                out += [self._fit_causal(i, lab, example.where, stats, n) for i, lab, n in encoded[k]]
        return out

    def segment_ids(self, conversations: list[Conversation]) -> tuple[list[list[list[tuple[str, bool]]]],
                                                                        list[list[int]]]:
        """The segment lists of each conversation (``ChatTemplate.segment_groups``) and the token ids
        of every segment in that order, each segment tokenized on its own, in one batched call."""
        groups = self.template.segment_groups(conversations, self.settings.loss_on, self.settings.rerendered_history)
        return groups, self.encode([text for group in groups for segs in group for text, _ in segs])

    def encode(self, texts: list[str]) -> list[list[int]]:
        """``tokenizer(text, add_special_tokens=False)["input_ids"]`` of each text, in one batched call
        to the Rust tokenizer when it gives the same ids (checked on the first batch)."""
        if not texts:
            return []
        unique = list(dict.fromkeys(texts))  # the same text (a turn's closing newline) is tokenized once
        if len(unique) < len(texts):
            ids = dict(zip(unique, self.encode(unique)))
            return [ids[text] for text in texts]
        if self._backend is None:
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            self._backend = False
            if getattr(self.tokenizer, "is_fast", False) and backend is not None:
                fast = getattr(backend, "encode_batch_fast", backend.encode_batch)  # tokenizers >= 0.21: no offsets
                probe = texts[:32]
                if [e.ids for e in fast(probe, add_special_tokens=False)] == self._slow_encode(probe):
                    self._backend = fast
        if self._backend:
            return [e.ids for e in self._backend(texts, add_special_tokens=False)]
        return self._slow_encode(texts)

    def _slow_encode(self, texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _causal_conversation(self, example: Example) -> Optional[Conversation]:
        """The conversation a causal LM trains on for ``example`` (None: not a conversation)."""
        if self.task != Task.CAUSAL_LM:
            return None
        if isinstance(example, Seq2SeqExample):
            return Conversation([Message("user", example.source), Message("assistant", example.target)],
                                reference=example.target, where=example.where)
        return example if isinstance(example, Conversation) else None

    def tokenize(self, example: Example, stats: TokenizeStats) -> Optional[dict[str, Any]]:
        kind = EXAMPLE_KINDS[type(example)]
        if kind not in ACCEPTS[self.task]:
            formats = {"classification": "classification, pair_classification", "text": "text",
                       "tokenized": "tokenized", "preference": "preference",
                       "unpaired_preference": "kto", "prompt": "prompt_only",
                       "seq2seq": "seq2seq", "conversation": "messages, sharegpt, alpaca, prompt_completion, qa"}
            allowed = "; ".join(f"{k} ({formats[k]})" for k in ACCEPTS[self.task])
            raise DataError(f"{example.where}: model.task={self.task} cannot train on {kind} examples; it takes "
                            f"{allowed}. Set data.format or model.task to match")
        if kind in PREFERENCE_KINDS:
            return tokenize_preference(self, example, stats)
        if self.task == Task.SEQUENCE_CLASSIFICATION:
            return self._classification(example, stats)  # type: ignore[arg-type]
        if self.task == Task.SEQ2SEQ:
            if isinstance(example, Conversation):
                prompt = seq2seq_source(example.prompt_messages())
                example = Seq2SeqExample(prompt, example.last_answer() or "", where=example.where)
            return self._seq2seq(example, stats)  # type: ignore[arg-type]
        if isinstance(example, Seq2SeqExample):
            example = Conversation([Message("user", example.source), Message("assistant", example.target)],
                                   reference=example.target, where=example.where)
        if isinstance(example, TokenizedExample):  # tokenized before: only the length rules apply
            labels = example.labels if example.labels is not None else list(example.input_ids)
            return self._fit_causal(list(example.input_ids), list(labels), example.where, stats)
        if isinstance(example, TextExample):
            encoded = tokenize_text(self.tokenizer, example, self.bos)
        else:
            encoded = tokenize_conversation(self.tokenizer, example, self.settings.loss_on, self.template)
        return self._fit_causal(encoded["input_ids"], encoded["labels"], example.where, stats)

    def _fit_causal(self, ids: list[int], labels: list[int], where: str, stats: TokenizeStats,
                    n_trained: Optional[int] = None) -> Optional[dict]:
        s, n = self.settings, len(ids)
        if n_trained is None:
            n_trained = sum(1 for t in labels if t != IGNORE_INDEX)
        if not n_trained:
            return stats.drop("dropped_no_trained_token", f"{where} (no trained token under data.loss_on={s.loss_on})")
        if n < s.min_length:
            return stats.drop("dropped_too_short", f"{where} ({n} tokens < data.min_length={s.min_length})")
        keep_first = 1 if self.bos and ids and ids[0] == self.tokenizer.bos_token_id else 0
        fitted = fit_to_length(ids, labels, s.max_length, s.truncation, keep_first)
        trained = n_trained if fitted.outcome == "fits" else sum(1 for t in fitted.labels if t != IGNORE_INDEX)
        if fitted.outcome == "too_long":
            why = f"data.truncation={s.truncation}"
            if s.truncation == "truncate_prompt":
                why = "the answer alone does not fit"
            return stats.drop("dropped_too_long", f"{where} ({n} tokens > data.max_length={s.max_length}; {why})")
        if trained == 0:
            return stats.drop("dropped_too_long", f"{where} ({n} tokens; no trained token left after {fitted.outcome})")
        if fitted.outcome != "fits":
            stats.cut(fitted.outcome, f"{where} ({n} -> {len(fitted.input_ids)} tokens)")
        stats.keep(len(fitted.input_ids), trained)
        return {"input_ids": fitted.input_ids, "labels": fitted.labels}

    def _classification(self, example: ClassificationExample, stats: TokenizeStats) -> Optional[dict]:
        tok, s = self.tokenizer, self.settings
        encoded = tok(example.text, example.text_pair)
        n = len(encoded["input_ids"])
        if n < s.min_length:
            return stats.drop("dropped_too_short", f"{example.where} ({n} tokens < data.min_length={s.min_length})")
        if n > s.max_length:
            encoded = tok(example.text, example.text_pair, truncation=True, max_length=s.max_length)
            stats.cut("truncated_end", f"{example.where} ({n} -> {len(encoded['input_ids'])} tokens)")
        row = {k: list(v) for k, v in encoded.items()}
        row["labels"] = example.label
        stats.keep(len(row["input_ids"]), 1)  # one trained target per example: its label
        return row

    def _seq2seq(self, example: Seq2SeqExample, stats: TokenizeStats) -> Optional[dict]:
        tok, s, where = self.tokenizer, self.settings, example.where
        source = tok(example.source)
        target = tok(example.target, add_special_tokens=False)["input_ids"]
        if tok.eos_token_id is not None:
            target = target + [tok.eos_token_id]
        n_source, n_target = len(source["input_ids"]), len(target)
        if n_source < s.min_length:
            return stats.drop("dropped_too_short",
                              f"{where} ({n_source} source tokens < data.min_length={s.min_length})")
        fits_target = n_target <= s.max_length or s.truncation == "truncate_end"
        if (n_source > s.max_length and s.truncation == "drop") or not fits_target:
            return stats.drop("dropped_too_long", f"{where} (source {n_source}, target {n_target} tokens > "
                                                  f"data.max_length={s.max_length}; data.truncation={s.truncation})")
        outcome = None
        if n_source > s.max_length:
            outcome = s.truncation
            source = _truncated(tok, example.source, s.max_length, "right" if outcome == "truncate_end" else "left")
        if n_target > s.max_length:
            outcome, target = "truncate_end", target[: s.max_length]
        if outcome:
            note = f"{where} (source {n_source}, target {n_target} tokens)"
            stats.cut(outcome.replace("truncate_", "truncated_"), note)
        row = {k: list(v) for k, v in source.items()}
        row["labels"] = target  # every target token is trained: no -100 inside
        stats.keep(len(row["input_ids"]) + len(target), len(target))
        return row


def _truncated(tokenizer: Any, text: str, max_length: int, side: str) -> Any:
    """``tokenizer(text)`` cut to ``max_length`` on ``side`` (special tokens kept by the tokenizer)."""
    old = tokenizer.truncation_side
    tokenizer.truncation_side = side
    try:
        return tokenizer(text, truncation=True, max_length=max_length)
    finally:
        tokenizer.truncation_side = old
