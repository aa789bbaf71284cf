"""Values a trainer computes per micro-batch (rewards, partial losses, lengths) added to its logs as
means since the previous log, averaged over processes.

A trainer mixes ``MeanLogs`` in before ``transformers.Trainer`` and calls ``self.note(name=value)``
per micro-batch; names starting with ``eval_`` go to the next evaluation log, the others to the
next training log. The kept values are part of a checkpoint's loss bookkeeping
(``guarded_trainer.ReliableTrainerMixin``), so a resumed run logs the same means as an unbroken one.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Optional

import torch


class MeanLogs:
    """Keeps named values per micro-batch and adds their means to the next log (see the module docstring)."""

    @property
    def logged_parts(self) -> dict[str, list[float]]:
        """Name -> the values kept since the last log."""
        if not isinstance(self.__dict__.get("_parts"), defaultdict):
            self.__dict__["_parts"] = defaultdict(list, self.__dict__.get("_parts") or {})
        return self.__dict__["_parts"]

    def note(self, **values: Any) -> None:
        """Keep each value (a tensor's mean) under its name until the next log."""
        for name, value in values.items():
            number = float(value.detach().float().mean()) if torch.is_tensor(value) else float(value)
            self.logged_parts[name].append(number)

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        """Add the kept means (training values to a training log, ``eval_`` ones to an evaluation log)."""
        evaluating = any(k.startswith("eval_") for k in logs)
        if "loss" in logs or evaluating:
            for name, values in sorted(self.logged_parts.items()):
                if name.startswith("eval_") != evaluating or not values:
                    continue
                local = torch.tensor(sum(values) / len(values), device=self.args.device)  # type: ignore[attr-defined]
                logs[name] = float(self.accelerator.reduce(local, reduction="mean"))  # type: ignore[attr-defined]
                values.clear()
        super().log(logs, start_time)  # type: ignore[misc]
