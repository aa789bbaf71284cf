"""Trainer callbacks: the progress bar, metrics.jsonl and the loss curve."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class ProgressBar(TrainerCallback):
    """One tqdm bar over optimizer steps showing loss, learning rate and tokens/s (ETA from tqdm)."""

    def __init__(self) -> None:
        self.bar = None
        self.start = 0.0
        self.tokens_at_start = 0

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, desc="Training", unit="step", dynamic_ncols=True)
            self.start = time.perf_counter()
            self.tokens_at_start = int(state.num_input_tokens_seen or 0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs or "loss" not in logs:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        tok_s = (int(state.num_input_tokens_seen or 0) - self.tokens_at_start) / elapsed
        self.bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs.get('learning_rate', 0):.2e}",
                             tok_s=f"{tok_s:.0f}", refresh=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MetricsJsonl(TrainerCallback):
    """Appends every log (loss, lr, eval loss, ...) as one JSON line to ``metrics.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch,
                                  "elapsed_s": round(time.perf_counter() - self.start, 3),
                                  "tokens_seen": int(state.num_input_tokens_seen or 0)}
        record.update({k: v for k, v in logs.items() if isinstance(v, (int, float, str))})
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
