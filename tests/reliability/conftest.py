"""Fixtures of the reliability tests: a tiny alpaca dataset and tiny training configs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# The reliability tests share helpers (reliability_checks, kill_driver) that sit next to them.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_rows_file(tmp_path_factory) -> Path:
    """20 short alpaca rows: with batch size 2 and accumulation 2 an epoch is 5 optimizer steps."""
    rows = [{"instruction": f"Add {a} and {b}.", "output": f"{a} + {b} = {a + b}\n#### {a + b}"}
            for a in range(5) for b in range(4)]
    path = tmp_path_factory.mktemp("rows") / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def tiny_overrides(model_dir: Path, data_file: Path, out_dir: Path, *extra: str) -> list[str]:
    """``key=value`` overrides of a seconds-long CPU run that checkpoints every step."""
    return [f"model.name_or_path={model_dir}", f"data.train={data_file}", "data.format=alpaca",
            f"output_dir={out_dir}", "train.max_steps=8", "train.batch_size=2", "train.grad_accum=2",
            "train.lr=5e-3", "train.logging_steps=1", "train.save_steps=1", "train.precision=fp32",
            "train.warmup_ratio=0.0", "train.num_threads=1", "eval.before_after=off", "data.cache=false",
            *extra]


@pytest.fixture(scope="session")
def overrides(tiny_llama_dir, tiny_rows_file):
    """``overrides(out_dir, *extra)`` -> the override list of a tiny run into ``out_dir``."""
    return lambda out_dir, *extra: tiny_overrides(tiny_llama_dir, tiny_rows_file, out_dir, *extra)
