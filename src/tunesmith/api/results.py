"""What a finished training run returns to Python callers, and what it records in ``run.json``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional


@dataclass
class TrainResult:
    """What a finished run reports; everything here is also written to the run directory.

    Attributes:
        run_dir: the run directory (adapter or weights, tokenizer, config.yaml, metrics.jsonl, ...).
        train_seconds: wall-clock seconds spent in ``Trainer.train``.
        train_loss: mean training loss over the run (None when no step ran).
        before: held-out results of the base model (exact match or accuracy), when measured.
        after: the same measurement for the tuned model, on the same examples.
        data: statistics of the training data (examples, tokens, dropped or truncated rows).
    """

    run_dir: Path
    train_seconds: float
    train_loss: Optional[float]
    before: Optional[dict[str, Any]] = None
    after: Optional[dict[str, Any]] = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainedModel:
    """What the training step of a run hands on to the record and the result.

    Attributes:
        output: the ``TrainOutput`` of ``Trainer.train`` (``global_step``, ``training_loss``).
        train_seconds: wall-clock seconds spent in ``Trainer.train``.
        trainable: parameters the optimizer updated.
        total: all parameters of the model.
        resources: peak memory and tokens per second (``reporting.resources``).
        nan_skipped: optimizer steps skipped for a NaN / inf loss or gradient.
        memory: whether steps were trimmed (``train.memory_trim``), why, and what the trims cost.
        speed: the packing, attention kernel (and why) and hub kernels the run trained with.
        memory_probe: the batch the memory probe ran (``train.memory_probe``), for the run's plan.
    """

    output: Any
    train_seconds: float
    trainable: int
    total: int
    resources: dict[str, Any]
    nan_skipped: int
    memory: dict[str, Any]
    speed: dict[str, Any]
    memory_probe: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecord:
    """``run.json``, the record of a finished run (its presence marks the run as finished).

    ``to_dict`` gives the file's contents, key for key and in this order.

    Example: ``RunRecord.from_run(trained, device="cpu", precision="fp32", task="causal_lm",
    method="lora", before=None, after=None, data={}, plan={}).to_dict()["global_step"]`` is the
    number of optimizer steps the run took (150 for the default job).
    """

    finished: str
    train_seconds: float
    train_loss: Optional[float]
    global_step: int
    device: str
    precision: str
    task: Optional[str]
    method: str
    trainable_parameters: int
    total_parameters: int
    metric: Optional[str]
    before_score: Optional[float]
    after_score: Optional[float]
    resources: dict[str, Any]
    data: dict[str, Any]
    nan_skipped_steps: int
    speed: dict[str, Any]
    memory: dict[str, Any]
    plan: dict[str, Any]

    @classmethod
    def from_run(cls, trained: TrainedModel, *, device: str, precision: str, task: Optional[str], method: str,
                 before: Optional[dict[str, Any]], after: Optional[dict[str, Any]], data: dict[str, Any],
                 plan: dict[str, Any]) -> "RunRecord":
        """The record of a run that trained (``trained``) and was measured (``before`` / ``after``)."""
        from datetime import datetime

        return cls(finished=datetime.now().isoformat(timespec="seconds"),
                   train_seconds=round(trained.train_seconds, 1), train_loss=trained.output.training_loss,
                   global_step=trained.output.global_step, device=device, precision=precision, task=task,
                   method=method, trainable_parameters=trained.trainable, total_parameters=trained.total,
                   metric=before["metric"] if before else None, before_score=before["score"] if before else None,
                   after_score=after["score"] if after else None, resources=trained.resources or {},
                   data=data or {}, nan_skipped_steps=trained.nan_skipped, speed=trained.speed or {},
                   memory=trained.memory or {}, plan=plan)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``run.json``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class BeforeAfter:
    """``eval_results.json``: one held-out measurement of the base model and of the tuned model.

    Attributes:
        metric: the metric's name (``exact_match``, ``accuracy``, ...; ``unlearning`` for forget and
            retain losses).
        before: the base model's result (``score`` and what the metric adds).
        after: the tuned model's result, on the same examples.
    """

    metric: str
    before: dict[str, Any]
    after: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``eval_results.json``."""
        return {"metric": self.metric, "before": self.before, "after": self.after}
