"""Comparing two runs: the logged curve step by step and the final adapter weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TOLERANCE = 1e-6


def curve(run_dir: Path) -> dict[int, dict[str, float]]:
    """Step -> the numbers logged at that step (loss, grad_norm, learning_rate, epoch)."""
    out: dict[int, dict[str, float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "loss" in record:
            assert record["step"] not in out, f"step {record['step']} logged twice"
            out[record["step"]] = {k: record[k] for k in ("loss", "grad_norm", "learning_rate", "epoch")}
    return out


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "adapter_model.safetensors"))


def assert_same_run(a: Path, b: Path, steps: list[int], tolerance: float = TOLERANCE) -> None:
    """Runs ``a`` and ``b`` logged the same numbers at ``steps`` and ended with the same adapter."""
    ca, cb = curve(a), curve(b)
    assert sorted(ca) == sorted(cb) == steps
    for step in ca:
        for key, value in ca[step].items():
            assert cb[step][key] == pytest.approx(value, abs=tolerance, rel=0), (step, key)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=tolerance, rtol=0), name
    ra, rb = (json.loads((d / "run.json").read_text()) for d in (a, b))
    assert ra["global_step"] == rb["global_step"] == steps[-1]
    assert rb["train_loss"] == pytest.approx(ra["train_loss"], abs=tolerance, rel=0)
