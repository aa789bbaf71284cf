"""What a finished training run returns to Python callers."""

from __future__ import annotations

from dataclasses import dataclass, field
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
