"""Fail fast on memory: before the first optimizer step, the batch with the most tokens runs forward
and backward once, so a run that will run out of memory does so in its first minute, with the
settings to change in the message (``train.memory_probe``).

The longest batch is found from the tokenized lengths, without running the model: the
``batch_size`` rows with the most tokens (for a preference pair both answers count), always with
the row holding the longest sequence, so it is the largest padded batch and the largest padding-free
row the data can make. The trainer's own collator builds it, the trainer's own ``training_step``
runs it; then the gradients are dropped, every random generator is put back (python, numpy, torch,
CUDA) and the optimizer does not step: training afterwards is the same, bit for bit, as without it.

An out-of-memory error in the probe or in any later step becomes a ``TrainingError`` naming the
batch's shape, its longest sequence and the settings that make a step smaller
(``out_of_memory_error``).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any, Optional

from tunesmith.errors import TrainingError

# What the rows of each kind put into a batch: the sequence columns a row's tokens are in.
SEQUENCE_COLUMNS = {"examples": ("input_ids",), "unpaired_preference": ("input_ids",),
                    "preference": ("chosen_input_ids", "rejected_input_ids")}
RETAIN = "retain_"  # an unlearning row's retain example (``unlearning.ForgetRetainRows``)
OOM_PHRASES = ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory")


@dataclass(frozen=True)
class ProbeBatch:
    """The batch the probe runs: the training rows it is made of and what it holds.

    Attributes:
        indices: positions of its rows in the training set.
        tokens: all the tokens of its rows (both answers of a pair).
        longest: the longest sequence in it (tokens), which is the longest of the training set.
    """

    indices: list[int]
    tokens: int
    longest: int


def row_lengths(dataset: Any, columns: tuple[str, ...]) -> list[tuple[int, int]]:
    """Per row: (its tokens over ``columns``, its longest sequence), read from the tokenized data.

    Example:
        >>> row_lengths([{"input_ids": [1, 2, 3]}, {"input_ids": [4]}], ("input_ids",))
        [(3, 3), (1, 1)]
    """
    per_column = [_column_lengths(dataset, column) for column in columns]
    return [(sum(lengths), max(lengths)) for lengths in zip(*per_column)]


def _column_lengths(dataset: Any, column: str) -> list[int]:
    """The length of ``column`` in every row; Arrow computes it for a ``datasets.Dataset`` (no row is
    turned into Python lists)."""
    data = getattr(dataset, "train", dataset)  # a DataBundle holds the Dataset
    if hasattr(data, "with_format") and hasattr(data, "column_names") and column in data.column_names:
        import pyarrow.compute as pc

        lengths: list[int] = []
        for table in data.with_format("arrow").iter(batch_size=8192):
            lengths += pc.list_value_length(table[column]).to_pylist()
        return [int(n or 0) for n in lengths]
    return [len(data[i][column]) for i in range(len(data))]


def longest_batch(lengths: list[tuple[int, int]], batch_size: int) -> ProbeBatch:
    """The ``batch_size`` rows with the most tokens, always with the row of the longest sequence
    (what a padded batch pads to). ``lengths``: ``row_lengths``.

    Example:
        >>> longest_batch([(5, 5), (9, 9), (2, 2), (7, 7)], 2)
        ProbeBatch(indices=[1, 3], tokens=16, longest=9)
    """
    if not lengths:
        raise TrainingError("train.memory_probe: the training set is empty; there is no batch to probe")
    longest_row = max(range(len(lengths)), key=lambda i: (lengths[i][1], lengths[i][0]))
    by_tokens = sorted(range(len(lengths)), key=lambda i: -lengths[i][0])
    chosen = [longest_row] + [i for i in by_tokens if i != longest_row][:max(batch_size, 1) - 1]
    chosen.sort()
    return ProbeBatch(chosen, sum(lengths[i][0] for i in chosen), lengths[longest_row][1])


def probe_rows(dataset: Any, batch: ProbeBatch, batch_size: int) -> list[dict[str, Any]]:
    """The rows of ``batch``, read without side effects. An unlearning run's rows (a forget set paired
    with retain examples drawn as rows are read) get the longest retain examples, without drawing."""
    forget = getattr(dataset, "forget", None)
    if forget is None:
        return [dict(dataset[i]) for i in batch.indices]
    rows = [dict(forget[i]) for i in batch.indices]
    retain = getattr(dataset, "retain", None)
    if retain is not None:
        retain_batch = longest_batch(row_lengths(retain, SEQUENCE_COLUMNS["examples"]), batch_size)
        for row, i in zip(rows, retain_batch.indices * len(rows)):
            row.update({RETAIN + key: value for key, value in retain[i].items()})
    return rows


def find_probe_batch(dataset: Any, rows_kind: str, batch_size: int, task: str) -> ProbeBatch:
    """The longest batch of ``dataset`` (the trainer's training set) for rows of ``rows_kind``."""
    columns = SEQUENCE_COLUMNS.get(rows_kind)
    if columns is None:
        raise TrainingError(f"train.memory_probe: rows of kind {rows_kind!r} have no length to probe")
    from tunesmith.config.vocabulary import Task

    if task == Task.SEQ2SEQ:  # the decoder's sequence is a second one
        columns = (*columns, "labels")
    source = getattr(dataset, "forget", dataset)  # unlearning: the forget set is the training set
    return longest_batch(row_lengths(source, columns), batch_size)


def batch_shape(inputs: dict[str, Any]) -> str:
    """``8 rows x 46 tokens`` (and the retain half of an unlearning batch), from the collated batch."""
    parts = []
    for key, value in inputs.items():
        shape = getattr(value, "shape", None)
        if key.endswith("input_ids") and shape is not None and len(shape) == 2:
            what = "" if key == "input_ids" else f" ({key[:-len('input_ids')].rstrip('_') or key})"
            parts.append(f"{shape[0]} row{'' if shape[0] == 1 else 's'} x {shape[1]} tokens{what}")
    return ", ".join(parts) or "a batch of unknown shape"


def longest_in(inputs: dict[str, Any]) -> Optional[int]:
    """The longest sequence of a collated batch (tokens; from the attention mask or position ids)."""
    mask = inputs.get("attention_mask")
    if mask is not None and getattr(mask, "ndim", 0) == 2:
        return int(mask.sum(-1).max())
    positions = inputs.get("position_ids")
    if positions is not None and getattr(positions, "numel", lambda: 0)():
        return int(positions.max()) + 1
    ids = inputs.get("input_ids")
    return int(ids.shape[-1]) if ids is not None and getattr(ids, "ndim", 0) == 2 else None


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is running out of memory: CUDA's ``torch.OutOfMemoryError``, a ``MemoryError``,
    or a CPU allocator's ``RuntimeError`` ('not enough memory', 'can't allocate memory')."""
    import torch

    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and any(p in str(err).lower() for p in OOM_PHRASES)


@dataclass(frozen=True)
class MemorySettings:
    """The config values an out-of-memory message suggests changing (read from the run's config)."""

    batch_size: int
    grad_accum: int
    max_length: int
    gradient_checkpointing: bool
    packing: str
    method: str
    r: int
    trainer: str
    reference: Optional[str] = None

    @classmethod
    def from_config(cls, cfg: Any, packing: str, trainer: str, reference: Optional[str]) -> "MemorySettings":
        """From a ``TrainConfig`` and the run's resolved packing, trainer and reference model."""
        t = cfg.train
        return cls(t.batch_size, t.grad_accum, cfg.data.max_length, bool(t.gradient_checkpointing), packing,
                   cfg.peft.method, int(cfg.peft.r), trainer, reference)

    def advice(self) -> list[str]:
        """What makes a step smaller, for this config (a setting already at its smallest is not offered)."""
        s, out = self, []
        if s.batch_size > 1:
            half = s.batch_size // 2
            accum = s.grad_accum * s.batch_size // half if s.batch_size % half == 0 else s.grad_accum * 2
            out.append(f"train.batch_size={half} with train.grad_accum={accum} (now {s.batch_size} x "
                       f"{s.grad_accum}; the same {s.batch_size * s.grad_accum} sequences per optimizer step"
                       + (")" if half * accum == s.batch_size * s.grad_accum else ", about)"))
        out.append(f"data.max_length={max(s.max_length // 2, 1)} (now {s.max_length}; longer examples are "
                   "dropped or truncated as data.truncation says)")
        if not s.gradient_checkpointing:
            out.append("train.gradient_checkpointing=true (activations recomputed in the backward pass: "
                       "much less memory, about a third slower)")
        if s.packing == "pack":
            out.append("data.packing=padding_free (rows as long as their examples, not data.max_length)")
        elif s.packing in ("none", "group_by_length"):
            out.append("data.packing=padding_free (no padding tokens)")
        if s.method == "full":
            out.append("peft.method=lora (an adapter: no gradients or optimizer state for the base weights)")
        elif s.method in ("lora", "dora"):
            out.append(f"peft.method=qlora (4-bit base weights)" + (f" or a smaller adapter, peft.r={s.r // 2}"
                                                                     if s.r > 1 else ""))
        elif s.r > 1:
            out.append(f"a smaller adapter, peft.r={s.r // 2} (now {s.r})")
        if s.reference == "copy":
            out.append("train.preference.reference=precomputed (the reference's scores computed before "
                       "training: no second model in memory)")
        return out


def out_of_memory_error(err: BaseException, inputs: dict[str, Any], settings: MemorySettings, device: str,
                        when: str) -> TrainingError:
    """The ``TrainingError`` for running out of memory on ``inputs`` ``when`` (e.g. 'at step 12')."""
    longest = longest_in(inputs)
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    longest_text = f"; its longest sequence {longest} tokens" if longest else ""
    batch = f"a batch of {batch_shape(inputs)}{longest_text}" if inputs else "outside the forward and backward pass"
    return TrainingError(
        f"out of memory on {device} {when}: {batch} "
        f"({type(err).__name__}: {detail[:300]}). To make a step smaller, change: " + "; ".join(settings.advice()))


def rng_states() -> dict[str, Any]:
    """Every random generator training draws from: python, numpy, torch (CPU, each CUDA device, MPS)."""
    import numpy as np
    import torch

    states: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                              "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    if hasattr(torch, "mps") and torch.backends.mps.is_available():
        states["mps"] = torch.mps.get_rng_state()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Put back what ``rng_states`` saved."""
    import numpy as np
    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])
    if "mps" in states:
        torch.mps.set_rng_state(states["mps"])


def run_probe(trainer: Any, model: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Forward and backward of ``rows`` (collated by the trainer's collator) through the trainer's own
    step, leaving no trace: gradients dropped, random generators and logged values put back, no
    optimizer step. Returns the collated batch (for its shape). Raises what the step raises."""
    states = rng_states()
    guard, parts = trainer.nan_guard, copy.deepcopy(trainer.__dict__.get("_parts"))
    had_accum = "current_gradient_accumulation_steps" in trainer.__dict__
    inputs = trainer.data_collator(rows)
    try:
        trainer.nan_guard = None  # the probe's loss is no step's
        if not had_accum:
            trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
        trainer.probe_step(model, dict(inputs))
    finally:
        model.zero_grad(set_to_none=True)  # as before the first step: no gradient yet
        trainer.nan_guard = guard
        if parts is not None or "_parts" in trainer.__dict__:
            trainer.__dict__["_parts"] = parts  # values a trainer logs per micro-batch (MeanLogs)
            if parts is None:
                del trainer.__dict__["_parts"]
        set_rng_states(states)
    return inputs


class MemoryProbe:
    """What ``guard`` gives a trainer: the rows to probe before the first step (None: no probe, or it
    ran) and the settings an out-of-memory message suggests, in the probe or in any step.

    Attributes:
        rows: the longest batch's rows until the probe runs; None when ``train.memory_probe`` is off.
        batch: which rows they are (None when off).
        settings: for the out-of-memory message.
        device: named in the message.
        shape, seconds: the probed batch's shape (``8 rows x 46 tokens``) and the probe's time, once it ran.
    """

    def __init__(self, rows: Optional[list[dict[str, Any]]], batch: Optional[ProbeBatch], settings: MemorySettings,
                 device: str) -> None:
        self.rows, self.batch, self.settings, self.device = rows, batch, settings, device
        self.shape: Optional[str] = None
        self.seconds: Optional[float] = None

    def peak_note(self) -> str:
        """``; peak 3.1 GiB of 79.2 GiB on cuda:0`` after the probe on a GPU; '' elsewhere."""
        import torch

        if not (self.device.startswith("cuda") and torch.cuda.is_available()):
            return ""
        device = torch.device(self.device)
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        return f"; peak {peak:.1f} GiB of {total:.1f} GiB on {self.device}"

    def record(self) -> dict[str, Any]:
        """For ``run.json``'s plan: the batch the probe ran (None when it did not run)."""
        if self.batch is None or self.shape is None:
            return {"memory_probe_batch": None}
        return {"memory_probe_batch": {"shape": self.shape, "tokens": self.batch.tokens,
                                       "longest": self.batch.longest, "rows": self.batch.indices,
                                       "seconds": round(self.seconds or 0.0, 2)}}


def build_memory_probe(trainer: Any, enabled: bool, rows_kind: str, task: str, settings: MemorySettings,
                       device: str) -> MemoryProbe:
    """The ``MemoryProbe`` of ``trainer``'s run: with the longest batch of its training set when
    ``enabled`` (``ResolvedRun.memory_probe``), else with the out-of-memory message's settings only."""
    if not enabled:
        return MemoryProbe(None, None, settings, device)
    batch = find_probe_batch(trainer.train_dataset, rows_kind, settings.batch_size, task)
    return MemoryProbe(probe_rows(trainer.train_dataset, batch, settings.batch_size), batch, settings,
                       device)
