"""Row formats: each turns one raw row (a dict) into a canonical example (see ``examples.py``).

Formats are registered by name (``data.format=alpaca``). Without a name (``data.format=auto``
where nothing else names one) ``detect_format`` picks one from the columns of the first row that fits any: the first format, in ``detection_order()`` (by ``priority``), whose
required columns are all present:

    tokenized > preference > kto > messages > sharegpt > alpaca > prompt_completion > prompt_only
    > qa > pair_classification > classification > seq2seq > text

so a row with ``text`` and ``label`` is classification, not text, a chat row that also carries
an ``answer`` column (the built-in arith data) stays ``messages``, a row with ``chosen`` and
``rejected`` is a preference pair whatever else it holds, and ``prompt`` + ``completion`` is
``prompt_completion`` unless a ``label`` makes it ``kto``; ``prompt`` alone is ``prompt_only``.
The preference, kto and prompt_only formats live in ``preference_formats.py``. ``data.columns`` renames the
file's columns to the canonical ones first (``{"question": "q"}``: the file's ``q`` is read as
``question``), so detection sees the canonical names. A bad row raises ``DataError`` naming the
file:line and the field.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from tunesmith.data.chat_rows import ROLE_ALIASES, check_turns, read_messages
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
from tunesmith.data.labels import LABEL, LabelMap, build_label_map, check_label_value, read_label
from tunesmith.data.row_fields import MISSING, UNKNOWN_FORMAT, WRONG_TYPE, found, read_text
from tunesmith.errors import ConfigError, DataError
from tunesmith.registry import Registry, did_you_mean

Row = tuple[dict[str, Any], str]  # (columns, "file:line")


@dataclass(frozen=True)
class ParseContext:
    """What a parse function may need beyond its row: the dataset's label map (label formats only)."""

    labels: Optional[LabelMap] = None


Parse = Callable[[dict[str, Any], str, ParseContext], Example]


@dataclass(frozen=True)
class RowFormat:
    name: str
    parse: Parse
    columns: tuple[str, ...]  # required columns; their presence identifies the format
    optional: tuple[str, ...] = ()  # columns read when present
    priority: int = 100  # lower wins when several formats match a row's columns
    kind: str = "conversation"  # what parse returns: a value of examples.EXAMPLE_KINDS

    @property
    def uses_labels(self) -> bool:
        """Whether the format reads class labels (a label map is built from every row first)."""
        return LABEL in self.columns and self.kind == "classification"


FORMATS: Registry[RowFormat] = Registry("data format", key="data.format")


def register_format(
    name: str, columns: tuple[str, ...], optional: tuple[str, ...] = (), priority: int = 100,
    kind: str = "conversation",
):
    """Decorator: ``@register_format("qa", ("question", "answer"), optional=("context",), priority=50)``."""

    def wrap(fn: Parse) -> Parse:
        FORMATS.register(name, RowFormat(name, fn, columns, optional, priority, kind))
        return fn

    return wrap


def detection_order() -> list[str]:
    """Format names in the order ``auto`` tries them: ``["messages", "sharegpt", ..., "text"]``."""
    return [n for n, _ in sorted(FORMATS.items(), key=lambda item: (item[1].priority, item[0]))]


def detect_format(row: dict[str, Any], where: str, columns: Optional[dict[str, str]] = None) -> str:
    """The first format (in ``detection_order()``) whose required columns the row has.

    ``{"q": "2+2?", "a": "4"}`` with ``columns={"question": "q", "answer": "a"}`` -> ``"qa"``.
    """
    mapped = _mapped(row, columns or {}, where)
    for name in detection_order():
        if all(c in mapped for c in FORMATS.get(name).columns):
            return name
    expected = "; ".join(f"{n}: {', '.join(FORMATS.get(n).columns)}" for n in detection_order())
    known = sorted({c for _, f in FORMATS.items() for c in f.columns + f.optional})
    hints = "".join(f" Column '{c}':{h}" for c in mapped if c not in known and (h := did_you_mean(str(c), known)))
    raise DataError(
        f"{where}: cannot tell the data format from the columns [{found(mapped)}].{hints} Expected one "
        f"of [{expected}]; or set data.format, and data.columns to map your column names", reason=UNKNOWN_FORMAT
    )


def apply_columns(row: dict[str, Any], columns: dict[str, str], where: str) -> dict[str, Any]:
    """Rename the file's columns to canonical ones: ``{"q": "Hi"}``, ``{"question": "q"}`` -> ``{"question": "Hi"}``."""
    if not columns:
        return row
    out = dict(row)
    for canonical, source in columns.items():
        if source not in row:
            hint = did_you_mean(source, [str(k) for k in row])
            raise DataError(f"{where}: data.columns maps '{canonical}' to the column '{source}', which this row "
                            f"lacks.{hint} Columns found: {found(row)}", reason=MISSING)
        out.pop(source, None)
    for canonical, source in columns.items():
        out[canonical] = row[source]
    return out


def check_columns(columns: dict[str, str], fmt: Optional[str] = None) -> None:
    """Fail fast on a ``data.columns`` key that no format (or not ``fmt``; None: any format the
    columns may be detected as) reads: ``{"questoin": "q"}``."""
    formats = [FORMATS.get(n) for n in detection_order()] if fmt is None else [FORMATS.get(fmt)]
    known = sorted({c for f in formats for c in f.columns + f.optional})
    for canonical, source in columns.items():
        if not isinstance(source, str) or not source:
            raise ConfigError(f"data.columns.{canonical}: must name a column of the file, got {source!r}")
        if canonical not in known:
            reader = "any format" if fmt is None else f"the {fmt} format"
            raise ConfigError(f"data.columns: '{canonical}' is not a column {reader} reads."
                              f"{did_you_mean(canonical, known)} Known: {', '.join(known)}")


@dataclass
class FormatInfo:
    """What ``to_examples`` found: the format, whether it was detected, and the label names."""

    format: str
    detected: bool = False
    kind: str = "conversation"
    label_names: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """``"format classification (detected from the columns); labels 0=neg, 1=pos"``."""
        how = "detected from the columns" if self.detected else "set by data.format"
        text = f"format {self.format} ({how})"
        if self.columns:
            text += "; columns " + ", ".join(f"{c}<-{s}" for c, s in self.columns.items())
        if self.kind == "classification":
            names = ", ".join(f"{i}={n}" for i, n in enumerate(self.label_names)) or "integer ids"
            text += f"; labels {names}"
        return text


def prepare_parser(
    rows: list[Row], fmt: Optional[str] = None, columns: Optional[dict[str, str]] = None,
    label_names: Optional[list[str]] = None, strict: bool = True,
) -> tuple[Callable[[Any, str], Example], FormatInfo]:
    """A ``parse_row(row, where) -> example`` for this dataset, and what was found about it.

    ``fmt`` None detects the format (from the first row whose columns fit one) and, for label formats, builds
    the label map from every row. ``strict=False`` leaves bad rows for ``parse_row`` to report one
    by one, which is what ``BadRowPolicy("skip").parse_all(rows, parse_row)`` needs.
    """
    columns = dict(columns or {})
    check_columns(columns, fmt)
    name, decided_by = (fmt, None) if fmt is not None else _detect_first(rows, columns)
    row_format = FORMATS.get(name)
    context = ParseContext()
    if row_format.uses_labels:
        shown = f"{LABEL} (column '{columns[LABEL]}')" if LABEL in columns else LABEL
        values = []
        for row, where in rows:
            try:  # checked row by row so that strict mode reports the first bad row first
                value = read_label(_mapped(row, columns, where), where)
                check_label_value(value, where, shown)
                values.append((value, where))
            except DataError:
                if strict:
                    raise
        context = ParseContext(build_label_map(values, label_names, shown, strict))

    def parse_row(row: Any, where: str) -> Example:
        try:
            return row_format.parse(_mapped(row, columns, where), where, context)
        except DataError as err:
            if decided_by is None or _file_of(where) == _file_of(decided_by):
                raise
            # A folder (or glob) of files in different formats: say which file decided the format.
            raise DataError(f"{err} (the format {name} was detected from {decided_by}; keep one format per "
                            "dataset, or set data.format)", reason=err.reason) from None

    names = list(context.labels.names) if context.labels else list(label_names or [])
    return parse_row, FormatInfo(name, fmt is None, row_format.kind, names, columns)


def to_examples(
    rows: list[Row], fmt: Optional[str] = None, columns: Optional[dict[str, str]] = None,
    label_names: Optional[list[str]] = None,
) -> tuple[list[Example], FormatInfo]:
    """Parse ``(row, where)`` pairs into canonical examples; the first bad row raises ``DataError``.

    ``[({"text": "great", "label": "pos"}, "f:1"), ({"text": "bad", "label": "neg"}, "f:2")]`` ->
    ``[ClassificationExample("great", 1, ...), ClassificationExample("bad", 0, ...)]`` and
    ``FormatInfo("classification", detected=True, label_names=["neg", "pos"])``.
    """
    if not rows:
        check_columns(dict(columns or {}), fmt)
        return [], FormatInfo(fmt, columns=dict(columns or {}), label_names=list(label_names or []))
    parse_row, info = prepare_parser(rows, fmt, columns, label_names)
    return [parse_row(row, where) for row, where in rows], info


def _mapped(row: Any, columns: dict[str, str], where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object (a mapping of columns), got {type(row).__name__}",
                        reason=WRONG_TYPE)
    return apply_columns(row, columns, where)


def _file_of(where: str) -> str:
    """``data/a.jsonl:3`` or ``data/a.json: item 3`` -> ``data/a.jsonl`` / ``data/a.json``."""
    return re.split(r":(?:\d| item )", where, maxsplit=1)[0]


def _detect_first(rows: list[Row], columns: dict[str, str]) -> tuple[str, str]:
    """The format of the first row that fits one, and where that row is; when none does, the first row's error."""
    if not rows:
        raise DataError("the dataset holds no rows, so its format cannot be detected; set data.format",
                        reason=UNKNOWN_FORMAT)
    first: Optional[DataError] = None
    for row, where in rows:
        try:
            return detect_format(row, where, columns), where
        except DataError as err:
            first = first or err
    raise first  # type: ignore[misc]


def to_conversations(rows: list[Row], fmt: Optional[str], columns: Optional[dict[str, str]] = None) -> list[Conversation]:
    """Parse ``(row, where)`` pairs into conversations (None: the format is detected from the first row)."""
    examples, info = to_examples(rows, fmt, columns)
    if examples and not isinstance(examples[0], Conversation):
        kind = EXAMPLE_KINDS[type(examples[0])]
        raise DataError(f"{rows[0][1]}: the {info.format} format gives {kind} examples, not conversations; "
                        "use a chat format (messages, sharegpt, alpaca, prompt_completion, qa) for chat training")
    return examples  # type: ignore[return-value]


def _reference(row: dict[str, Any]) -> Optional[str]:
    value = row.get("answer")
    return None if value is None or isinstance(value, (dict, list)) else str(value)


# --- chat formats -> Conversation ------------------------------------------------------------


@register_format("messages", ("messages",), priority=10)
def from_messages(row: dict[str, Any], where: str, context: ParseContext) -> Conversation:
    """``{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}``
    -> user "Hi", assistant "Hello". A message may carry ``"train": false`` to keep it out of the loss."""
    messages = read_messages(row, "messages", where, role_key="role", content_key="content")
    return Conversation(messages, reference=_reference(row), where=where)


@register_format("sharegpt", ("conversations",), optional=("system",), priority=20)
def from_sharegpt(row: dict[str, Any], where: str, context: ParseContext) -> Conversation:
    """``{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}``
    -> user "Hi", assistant "Hello"; ``from`` may be system, human, user, gpt or assistant."""
    messages = read_messages(row, "conversations", where, role_key="from", content_key="value", aliases=ROLE_ALIASES)
    system = read_text(row, "system", where, required=False)
    if system.strip() and messages[0].role != "system":
        messages.insert(0, Message("system", system))
    return Conversation(messages, reference=_reference(row), where=where)


@register_format("alpaca", ("instruction", "output"), optional=("input", "system"), priority=30)
def from_alpaca(row: dict[str, Any], where: str, context: ParseContext) -> Conversation:
    """``{"instruction": "Add", "input": "2 and 3", "output": "5"}`` ->
    user "Add\\n\\n2 and 3", assistant "5" (an optional ``system`` column becomes a system turn)."""
    instruction = read_text(row, "instruction", where)
    extra = read_text(row, "input", where, required=False)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    system = read_text(row, "system", where, required=False)
    messages = [Message("system", system)] if system.strip() else []
    messages += [Message("user", user), Message("assistant", read_text(row, "output", where))]
    return Conversation(messages, reference=_reference(row), where=where)


@register_format("prompt_completion", ("prompt", "completion"), priority=40)
def from_prompt_completion(row: dict[str, Any], where: str, context: ParseContext) -> Conversation:
    """``{"prompt": "2+2=", "completion": "4"}`` -> user "2+2=", assistant "4".

    TRL's conversational form (lists of messages) works too:
    ``{"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello"}]}``.
    """
    if isinstance(row.get("prompt"), list) or isinstance(row.get("completion"), list):
        head = read_messages(row, "prompt", where, "role", "content", check=False)
        tail = read_messages(row, "completion", where, "role", "content", check=False)
        messages = head + tail
        check_turns(messages, where, "prompt + completion")
    else:
        messages = [Message("user", read_text(row, "prompt", where)),
                    Message("assistant", read_text(row, "completion", where))]
    return Conversation(messages, reference=_reference(row), where=where)


@register_format("qa", ("question", "answer"), optional=("context",), priority=50)
def from_qa(row: dict[str, Any], where: str, context: ParseContext) -> Conversation:
    """``{"context": "Paris is in France.", "question": "Where is Paris?", "answer": "France"}`` ->
    user "Paris is in France.\\n\\nWhere is Paris?", assistant "France" (the reference answer)."""
    question = read_text(row, "question", where)
    background = read_text(row, "context", where, required=False)
    answer = read_text(row, "answer", where)
    user = f"{background}\n\n{question}" if background.strip() else question
    return Conversation([Message("user", user), Message("assistant", answer)], reference=answer, where=where)


# --- task formats -> classification / seq2seq / plain text ------------------------------------


@register_format("pair_classification", ("sentence1", "sentence2", LABEL), priority=60, kind="classification")
def from_pair_classification(row: dict[str, Any], where: str, context: ParseContext) -> ClassificationExample:
    """``{"sentence1": "A cat sat.", "sentence2": "A cat was sitting.", "label": 1}`` ->
    ``ClassificationExample("A cat sat.", 1, text_pair="A cat was sitting.")``."""
    label, name = _label(row, where, context)
    return ClassificationExample(read_text(row, "sentence1", where), label, read_text(row, "sentence2", where),
                                 where=where, label_name=name)


@register_format("classification", ("text", LABEL), priority=70, kind="classification")
def from_classification(row: dict[str, Any], where: str, context: ParseContext) -> ClassificationExample:
    """``{"text": "Loved it", "label": "positive"}`` -> ``ClassificationExample("Loved it", 1)``
    when the names are ``["negative", "positive"]``."""
    label, name = _label(row, where, context)
    return ClassificationExample(read_text(row, "text", where), label, where=where, label_name=name)


@register_format("seq2seq", ("source", "target"), priority=80, kind="seq2seq")
def from_seq2seq(row: dict[str, Any], where: str, context: ParseContext) -> Seq2SeqExample:
    """``{"source": "translate: Hallo", "target": "Hello"}`` -> ``Seq2SeqExample("translate: Hallo", "Hello")``."""
    return Seq2SeqExample(read_text(row, "source", where), read_text(row, "target", where), where=where)


@register_format("text", ("text",), priority=90, kind="text")
def from_text(row: dict[str, Any], where: str, context: ParseContext) -> TextExample:
    """``{"text": "Once upon a time"}`` -> ``TextExample("Once upon a time")`` (language modelling)."""
    return TextExample(read_text(row, "text", where), where=where)


@register_format("tokenized", ("input_ids",), optional=("labels", "attention_mask"), priority=5, kind="tokenized")
def from_tokenized(row: dict[str, Any], where: str, context: ParseContext) -> TokenizedExample:
    """Rows that are token ids already, for causal LMs: ``{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}``
    -> ``TokenizedExample([5, 6, 7], [-100, 6, 7])``.

    Without ``labels`` every token is trained. Positions where ``attention_mask`` is 0 (padding
    added before) are dropped; tunesmith pads each batch itself.
    """
    ids = _id_list(row, "input_ids", where)
    labels = _id_list(row, "labels", where) if row.get("labels") is not None else None
    mask = _id_list(row, "attention_mask", where) if row.get("attention_mask") is not None else None
    for name, values in (("labels", labels), ("attention_mask", mask)):
        if values is not None and len(values) != len(ids):
            raise DataError(f"{where}: '{name}' has {len(values)} entries but 'input_ids' has {len(ids)}; "
                            "they must be the same length (labels are unshifted)", reason=WRONG_TYPE)
    if mask is not None:
        keep = [i for i, m in enumerate(mask) if m]
        ids = [ids[i] for i in keep]
        labels = [labels[i] for i in keep] if labels is not None else None
    if not ids:
        raise DataError(f"{where}: 'input_ids' holds no tokens", reason=WRONG_TYPE)
    return TokenizedExample(ids, labels, where=where)


def _id_list(row: dict[str, Any], key: str, where: str) -> list[int]:
    """``row[key]`` as a list of ints (token ids, labels or a mask); anything else is a DataError."""
    value = row.get(key)
    if hasattr(value, "tolist"):  # a tensor or an array
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise DataError(f"{where}: '{key}' must be a list of integers (token ids), got {str(value)[:60]}",
                        reason=WRONG_TYPE)
    return list(value)


def _label(row: dict[str, Any], where: str, context: ParseContext) -> tuple[int, Optional[str]]:
    # to_examples builds the map from every row first; a direct call gets one from this row alone.
    labels = context.labels or build_label_map([(read_label(row, where), where)])
    return labels.resolve(read_label(row, where), where)


# Registering the preference, kto and prompt_only formats (they use register_format above).
from tunesmith.data import preference_formats  # noqa: E402,F401
