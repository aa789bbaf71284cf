"""Exact resume of a streaming run (data.streaming=true) on a tiny CPU model: cut short in the middle of
a gradient accumulation and resumed, it ends with the loss curve and weights of an unbroken run; the
stream continues from the position saved in the checkpoint instead of reading the corpus again."""

from __future__ import annotations

import json

import pytest
from transformers import TrainerCallback

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.errors import ConfigError
from tunesmith.training import register_callback
from tunesmith.training.checkpoints import STREAM_POSITION, complete_checkpoints

from reliability_checks import assert_same_run

EVERY_2 = ("train.logging_steps=2",)
STEPS = [1, 2, 4, 6, 8]
VARIANTS = {
    "padding-free-shuffled": ("data.streaming=true", "data.shuffle_buffer=5"),
    "packed": ("data.streaming=true", "data.packing=pack", "data.max_length=64"),
}


class StreamCrash(RuntimeError):
    """Raised by the test callback to cut a run short."""


@register_callback("test_stream_crash_after", overwrite=True)
class CrashAfter(TrainerCallback):
    """Crash after the first micro-batch of the optimizer step that follows ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_substep_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise StreamCrash(f"simulated crash in the middle of step {self.step + 1}")


def train(overrides: list[str]):
    return FineTuner(load_config(overrides=overrides)).train()


@pytest.fixture(scope="module")
def stream_overrides(overrides, tmp_path_factory):
    """The tiny run's overrides over 27 rows of varied lengths: 8 steps of 4 rows go past the end of the
    file once, and no whole number of passes lines up with the 5 steps before the crash, so a stream
    that skipped or repeated rows after the resume would train on other rows."""
    rows = [{"instruction": f"Add {a} and {b}." + " Show the sum." * (a % 4), "output": f"{a} + {b} = {a + b}"}
            for a in range(9) for b in range(3)]
    path = tmp_path_factory.mktemp("stream") / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return lambda out, *extra: [o for o in overrides(out, *extra) if not o.startswith("data.train=")] + [
        f"data.train={path}"]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_resumed_stream_matches_an_unbroken_run(stream_overrides, tmp_path, variant):
    overrides = stream_overrides
    settings = (*EVERY_2, *VARIANTS[variant])
    reference = tmp_path / "reference"
    train(overrides(reference, *settings))
    record = json.loads((reference / "run.json").read_text())
    assert record["plan"]["streaming"] is True
    assert any("data.streaming: read" in note for note in record["data"]["notes"])

    out = tmp_path / "run"
    with pytest.raises(StreamCrash):
        train(overrides(out, *settings, "train.callbacks=[test_stream_crash_after]",
                        "train.callback_args={test_stream_crash_after: {step: 5}}"))
    checkpoints = complete_checkpoints(out / "checkpoints")
    assert [c.step for c in checkpoints] == [1, 2, 3, 4, 5]
    position = json.loads((checkpoints[-1].path / STREAM_POSITION).read_text())
    assert position["step"] == 5 and position["rows_out"] == 5 * 4  # batch 2 x accumulation 2 per step
    assert STREAM_POSITION in checkpoints[-1].record["files"]  # covered by the checkpoint's checksums
    train(overrides(out, *settings))  # the same command again: resumes from checkpoint-5
    assert_same_run(reference, out, STEPS)


def test_streaming_needs_max_steps(overrides, tmp_path):
    with pytest.raises(ConfigError, match="train.max_steps: -1 with data.streaming=true"):
        train(overrides(tmp_path / "run", "data.streaming=true", "train.max_steps=-1", "train.epochs=1"))
    assert not (tmp_path / "run").exists()  # refused before any folder is made


def test_streaming_refuses_trainers_of_pairs(tmp_path, tiny_llama_dir):
    from tunesmith.api.resolved_run import resolve_run

    rows = tmp_path / "pairs.jsonl"
    rows.write_text(json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"}) + "\n", encoding="utf-8")
    cfg = load_config(overrides=[f"model.name_or_path={tiny_llama_dir}", f"data.train={rows}", "data.streaming=true",
                                 "train.trainer=dpo"])
    with pytest.raises(ConfigError, match="data.streaming: train.trainer=dpo trains on preference rows"):
        resolve_run(cfg, device="cpu")
