"""Collators: lists of tokenized examples -> batch tensors.

Pick one with ``data.collator`` (with ``auto`` the run picks by task and ``data.packing``, see
``tunesmith.api.choices.batching``); `build_collator` resolves the pad id and the pad multiple for a device.
Training pads on the right; ``padding_side="left"`` is for batched generation, where every
prompt must end at the last column. Labels are unshifted (see `tunesmith.data.tokenize`) and pad
positions get -100 so they are never trained.

torch is imported inside ``__call__`` so that looking up a collator name stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

from tunesmith.config.vocabulary import Packing, Task
from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.errors import ConfigError, DataError, ModelError
from tunesmith.registry import Registry

PaddingSide = Literal["right", "left"]

# tunesmith builds a collator as ``cls(pad_token_id=..., pad_to_multiple_of=..., padding_side=...,
# **data.collator_args)``, or, for a class that takes a ``tokenizer`` instead (transformers'
# ``DataCollatorWithPadding``, ``DataCollatorForSeq2Seq``), as ``cls(tokenizer=..., pad_to_multiple_of=...,
# **data.collator_args)``; the result is called with a list of token rows and returns a batch.
COLLATORS: Registry[Callable[..., Any]] = Registry(
    "collator", key="data.collator", provided=("pad_token_id", "pad_to_multiple_of", "padding_side", "tokenizer"))


def register_collator(name: str, *, overwrite: bool = False) -> Callable:
    """Decorator: register a collator class as ``data.collator=<name>``.

    It is built as ``cls(pad_token_id, pad_to_multiple_of, padding_side, **data.collator_args)``; a
    class that takes ``tokenizer`` and no ``pad_token_id`` (transformers' collators) is built as
    ``cls(tokenizer=..., pad_to_multiple_of=..., **data.collator_args)``.

    Example:
        ``from transformers import DataCollatorWithPadding; register_collator("with_padding")(DataCollatorWithPadding) # then data.collator=with_padding``

    Raises:
        ConfigError: ``name`` is already registered (pass ``overwrite=True`` to replace it).
    """
    return COLLATORS.register(name, overwrite=overwrite)


def _padded_length(longest: int, multiple: int | None) -> int:
    """``_padded_length(13, 8)`` -> ``16``; ``_padded_length(13, None)`` -> ``13``."""
    return (longest + multiple - 1) // multiple * multiple if multiple else longest


def _pad(seqs: Sequence[Sequence[int]], value: int, length: int, side: str) -> list[list[int]]:
    """``_pad([[1, 2], [3]], 0, 3, "right")`` -> ``[[1, 2, 0], [3, 0, 0]]``."""
    if side == "left":
        return [[value] * (length - len(s)) + list(s) for s in seqs]
    return [list(s) + [value] * (length - len(s)) for s in seqs]


def _check_side(padding_side: str) -> None:
    if padding_side not in ("right", "left"):
        raise ConfigError(f"padding_side: unknown value {padding_side!r}. Allowed: right, left")


def _padded_inputs(features: Sequence[dict[str, Any]], pad_token_id: int, multiple: int | None,
                   side: str) -> dict[str, Any]:
    """input_ids padded with the pad id, attention_mask (1 = real token) and token_type_ids if any."""
    import torch

    ids = [f["input_ids"] for f in features]
    length = _padded_length(max(len(s) for s in ids), multiple)
    out = {
        "input_ids": torch.tensor(_pad(ids, pad_token_id, length, side), dtype=torch.long),
        "attention_mask": torch.tensor(_pad([[1] * len(s) for s in ids], 0, length, side), dtype=torch.long),
    }
    if "token_type_ids" in features[0]:  # BERT-style sentence pairs; pads are segment 0
        out["token_type_ids"] = torch.tensor(
            _pad([f["token_type_ids"] for f in features], 0, length, side), dtype=torch.long)
    return out


@dataclass
class PaddingSettings:
    """What every collator needs to pad: the pad id, an optional length multiple and the side."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    padding_side: PaddingSide = "right"

    def __post_init__(self) -> None:
        _check_side(self.padding_side)


@register_collator("causal_lm")
@dataclass
class PaddingCollator(PaddingSettings):
    """Pads each batch to its longest example (dynamic padding), on the right by default.

    ``{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}`` and ``{"input_ids": [5], "labels": [5]}``
    become ``input_ids [[5, 6, 7], [5, p, p]]``, ``labels [[-100, 6, 7], [5, -100, -100]]``,
    ``attention_mask [[1, 1, 1], [1, 0, 0]]`` (p = pad id). ``pad_to_multiple_of`` rounds the
    length up, which helps tensor cores on GPUs.
    """


    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = _padded_inputs(features, self.pad_token_id, self.pad_to_multiple_of, self.padding_side)
        length = batch["input_ids"].shape[1]
        labels = _pad([f["labels"] for f in features], IGNORE_INDEX, length, self.padding_side)
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch


@register_collator("seq2seq")
@dataclass
class Seq2SeqCollator(PaddingSettings):
    """Pads sources and targets separately; the model builds ``decoder_input_ids`` from labels.

    ``{"input_ids": [4, 5, 6], "labels": [7]}`` and ``{"input_ids": [4], "labels": [8, 9]}``
    become ``input_ids [[4, 5, 6], [4, p, p]]``, ``attention_mask [[1, 1, 1], [1, 0, 0]]``,
    ``labels [[7, -100], [8, 9]]``. Labels always pad on the right: the decoder reads them from
    its start token onwards, whatever side the encoder input is padded on.
    """


    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = _padded_inputs(features, self.pad_token_id, self.pad_to_multiple_of, self.padding_side)
        if "labels" in features[0]:  # absent when collating prompts for generation
            targets = [f["labels"] for f in features]
            length = _padded_length(max(len(t) for t in targets), self.pad_to_multiple_of)
            batch["labels"] = torch.tensor(_pad(targets, IGNORE_INDEX, length, "right"), dtype=torch.long)
        return batch


@register_collator("classification")
@dataclass
class ClassificationCollator(PaddingSettings):
    """Pads the inputs; labels become one class id per example.

    ``{"input_ids": [4, 5], "label": 1}`` and ``{"input_ids": [4], "label": 0}`` become
    ``input_ids [[4, 5], [4, p]]``, ``attention_mask [[1, 1], [1, 0]]``, ``labels [1, 0]``.
    The label may be stored as ``label`` or ``labels``.
    """


    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = _padded_inputs(features, self.pad_token_id, self.pad_to_multiple_of, self.padding_side)
        key = "labels" if "labels" in features[0] else "label" if "label" in features[0] else None
        if key is not None:  # absent when predicting
            batch["labels"] = torch.tensor([int(f[key]) for f in features], dtype=torch.long)
        return batch


@register_collator("packed")
@dataclass
class PackedCollator(PaddingSettings):
    """Padding-free batches: examples share a row and are kept apart by ``position_ids``.

    Plain examples are concatenated into one row; blocks from `tunesmith.data.packing.pack_examples`
    (rows that already carry ``position_ids``) become one row each. There is no attention_mask:
    transformers 5.x finds the restarts of ``position_ids`` and builds a block-diagonal causal
    mask for sdpa and eager (tests/data/test_collators.py checks it against a real model);
    flash attention turns them into varlen boundaries. The first token of every example gets label -100 so no token is
    trained to predict across a boundary. Rows of unequal length are padded with a segment of pad
    tokens whose positions restart at 0 too, so the pads attend only to each other.

    ``{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}`` and ``{"input_ids": [8, 9], "labels": [8, 9]}``
    become ``input_ids [[5, 6, 7, 8, 9]]``, ``labels [[-100, 6, 7, -100, 9]]``,
    ``position_ids [[0, 1, 2, 0, 1]]`` and ``use_cache False``.

    With ``sequence_boundaries`` (set when training attends with the variable-length kernel on
    CUDA) the batch also carries the examples' cumulative lengths over the flattened rows, so the
    kernel needs nothing read back from the GPU: here ``cu_seq_lens_q`` / ``cu_seq_lens_k``
    ``[0, 3, 5]`` (int32) and ``max_length_q`` / ``max_length_k`` ``3``. A row's pad segment counts
    as an example of its own.
    """

    sequence_boundaries: bool = False

    def __post_init__(self) -> None:
        if self.padding_side != "right":
            raise ConfigError("padding_side: packed batches are for training and pad on the right, "
                              f"got {self.padding_side!r}")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        prepacked = ["position_ids" in f for f in features]
        if any(prepacked) and not all(prepacked):
            # Concatenating a block as if it were one example would merge its examples.
            raise DataError("a batch mixes packed blocks (with position_ids) and plain examples")
        if all(prepacked):
            rows = [(list(f["input_ids"]), list(f["labels"]), list(f["position_ids"])) for f in features]
        else:
            ids: list[int] = []
            labels: list[int] = []
            positions: list[int] = []
            for f in features:
                ids += f["input_ids"]
                labels += f["labels"]
                positions += range(len(f["input_ids"]))
            rows = [(ids, labels, positions)]
        length = _padded_length(max(len(r[0]) for r in rows), self.pad_to_multiple_of)
        out_ids, out_labels, out_pos = [], [], []
        for ids, labels, positions in rows:
            pad = length - len(ids)
            out_ids.append(ids + [self.pad_token_id] * pad)
            out_labels.append([IGNORE_INDEX if p == 0 else t for t, p in zip(labels, positions)] + [IGNORE_INDEX] * pad)
            out_pos.append(positions + list(range(pad)))
        batch = {
            "input_ids": torch.tensor(out_ids, dtype=torch.long),
            "labels": torch.tensor(out_labels, dtype=torch.long),
            "position_ids": torch.tensor(out_pos, dtype=torch.long),
            # transformers only looks for packed sequences when there is no KV cache; a model whose
            # config says use_cache=True (the default outside Trainer) would create an empty cache
            # and silently let examples attend to each other.
            "use_cache": False,
        }
        if self.sequence_boundaries:
            from tunesmith.data.segments import boundaries_from_positions

            batch.update(boundaries_from_positions(out_pos))
        return batch


def _parameter_names(obj: Any) -> set[str]:
    """The keyword names ``obj`` accepts (a class, function or ``functools.partial``); empty if unknown."""
    import inspect

    try:
        return set(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        return set()


def pad_multiple_for_device(device: Any) -> int | None:
    """``"cuda:0"`` -> ``8`` (tensor cores want multiples of 8); ``"cpu"`` / ``"mps"`` -> ``None``."""
    return 8 if str(device).startswith("cuda") else None


# The collator that pads rows of one example each, by task.
COLLATOR_BY_TASK = {Task.CAUSAL_LM: "causal_lm", Task.SEQ2SEQ: "seq2seq", Task.SEQUENCE_CLASSIFICATION: "classification"}


def collator_for_task(task: str) -> str:
    """The collator that pads rows of one example each for ``task``: ``"sequence_classification"`` ->
    ``"classification"``; an unknown task is a ConfigError naming ``model.task``."""
    try:
        return COLLATOR_BY_TASK[Task(task)]
    except ValueError:
        raise ConfigError(f"model.task: cannot pick a collator for task {task!r}; "
                          f"allowed: {', '.join(t.value for t in COLLATOR_BY_TASK)}") from None


def check_collator(name: str, packing: str = "none") -> str:
    """``data.collator`` (a registered name or ``module:attr`` path) after a check that it fits ``packing``."""
    COLLATORS.get(name)  # unknown names fail here, with the known ones listed
    if packing == Packing.PACK and name != "packed":
        raise ConfigError(f"data.collator: packed blocks need the 'packed' collator, got {name!r} "
                          "(padding them with an attention_mask would let examples attend to each other)")
    return name


def build_collator(name: str, task: str, tokenizer: Any, packing: str = "none", device: Any = "cpu",
                   padding_side: PaddingSide = "right", args: dict[str, Any] | None = None,
                   sequence_boundaries: bool = False) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """Build the collator ``name`` (a registered one, chosen for ``task``) for a packing mode and device.

    ``build_collator("causal_lm", "causal_lm", tok, "none", "cuda")`` ->
    ``PaddingCollator(pad_token_id=tok.pad_token_id, pad_to_multiple_of=8)``.
    A tokenizer without a pad token pads with its EOS token (pads are masked either way).
    ``args`` (``data.collator_args``) are extra keyword arguments for the collator class;
    ``sequence_boundaries`` makes padding-free batches carry their examples' cumulative lengths
    (see `PackedCollator`).
    """
    cls = COLLATORS.build(check_collator(name, packing), args, "data.collator_args")
    params = _parameter_names(cls)
    if "tokenizer" in params and "pad_token_id" not in params:  # a transformers-style collator
        if getattr(tokenizer, "pad_token_id", None) is None:
            raise ModelError(f"data.collator: {name!r} pads with the tokenizer, which has no pad token; "
                             "set tokenizer.pad_token (e.g. to its EOS token) or use data.collator=auto")
        extra = {"pad_to_multiple_of": pad_multiple_for_device(device)} if "pad_to_multiple_of" in params else {}
        return cls(tokenizer=tokenizer, **extra)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:
        pad_id = getattr(tokenizer, "eos_token_id", None)
    if pad_id is None:
        raise ModelError("the tokenizer has neither a pad nor an EOS token, so batches cannot be padded; "
                         "set tokenizer.pad_token")
    collator = cls(pad_token_id=pad_id, pad_to_multiple_of=pad_multiple_for_device(device), padding_side=padding_side)
    if sequence_boundaries and isinstance(collator, PackedCollator):
        collator.sequence_boundaries = True
    return collator
