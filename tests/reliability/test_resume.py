"""Exact resume and determinism on a tiny CPU model: a run cut short mid-epoch (in the middle of a
gradient accumulation) and resumed ends with the same loss curve and weights as an unbroken run,
within 1e-6; the same seed twice gives the same curve and weights."""

from __future__ import annotations

import pytest
from transformers import TrainerCallback

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.training import register_callback
from tunesmith.training.checkpoints import complete_checkpoints

from reliability_checks import assert_same_run, curve

EVERY_2 = ("train.logging_steps=2",)
STEPS = [1, 2, 4, 6, 8]  # logged: the first step, then every 2 steps


class SimulatedCrash(RuntimeError):
    """Raised by the test callback to cut a run short."""


@register_callback("test_crash_after", overwrite=True)
class CrashAfter(TrainerCallback):
    """Crash after the first micro-batch of the optimizer step that follows ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_substep_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise SimulatedCrash(f"simulated crash in the middle of step {self.step + 1}")


@register_callback("test_crash_at_end", overwrite=True)
class CrashAtEnd(TrainerCallback):
    """Crash after the last step was checkpointed, before the run's outputs are written."""

    def on_train_end(self, args, state, control, **kwargs):
        raise SimulatedCrash("simulated crash after the last step")


def train(overrides: list[str]):
    return FineTuner(load_config(overrides=overrides)).train()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, overrides):
    out = tmp_path_factory.mktemp("reference") / "run"
    train(overrides(out, *EVERY_2))
    return out


# Logs every 2 steps and crashes after odd steps, so the checkpoint holds a loss not yet logged.
@pytest.mark.parametrize("crash_after", [3, 7], ids=["mid-epoch-1", "mid-epoch-2"])
def test_resumed_run_matches_an_unbroken_one(reference, overrides, tmp_path, crash_after):
    out = tmp_path / "run"
    with pytest.raises(SimulatedCrash):
        train(overrides(out, *EVERY_2, "train.callbacks=[test_crash_after]",
                        f"train.callback_args={{test_crash_after: {{step: {crash_after}}}}}"))
    assert [c.step for c in complete_checkpoints(out / "checkpoints")] == list(range(1, crash_after + 1))
    assert not (out / "run.json").exists()
    train(overrides(out, *EVERY_2))  # the same command again: train.resume=auto continues from the newest checkpoint
    assert_same_run(reference, out, STEPS)


def test_explicit_resume_path_into_a_new_folder(reference, overrides, tmp_path):
    """train.resume=<checkpoint> with another output_dir continues that run there."""
    first = tmp_path / "first"
    with pytest.raises(SimulatedCrash):
        train(overrides(first, *EVERY_2, "train.callbacks=[test_crash_after]", "train.callback_args={test_crash_after: {step: 4}}"))
    second = tmp_path / "second"
    second.mkdir()
    (second / "metrics.jsonl").write_text((first / "metrics.jsonl").read_text())  # the curve so far
    train(overrides(second, *EVERY_2, f"train.resume={first / 'checkpoints' / 'checkpoint-4'}"))
    assert_same_run(reference, second, STEPS)


def test_same_seed_same_curve_and_weights(reference, overrides, tmp_path):
    out = tmp_path / "again"
    train(overrides(out, *EVERY_2))
    assert_same_run(reference, out, STEPS, tolerance=0.0)  # bit for bit on the same machine
    other = tmp_path / "other-seed"
    train(overrides(other, *EVERY_2, "train.seed=7"))
    assert curve(other)[8]["loss"] != curve(reference)[8]["loss"]


def test_resume_with_length_grouped_batches(overrides, tmp_path):
    """data.packing=group_by_length: the length-grouped sampler is seeded per epoch, so a resume in
    the second epoch sees the batches an unbroken run sees."""
    grouped = (*EVERY_2, "data.packing=group_by_length")
    reference = tmp_path / "reference"
    train(overrides(reference, *grouped))
    out = tmp_path / "run"
    with pytest.raises(SimulatedCrash):
        train(overrides(out, *grouped, "train.callbacks=[test_crash_after]",
                        "train.callback_args={test_crash_after: {step: 7}}"))
    train(overrides(out, *grouped))
    assert_same_run(reference, out, STEPS)


def test_resume_from_the_final_checkpoint_trains_no_further(reference, overrides, tmp_path):
    """Killed after the last step but before run.json: the same command finishes the outputs only."""
    out = tmp_path / "run"
    with pytest.raises(SimulatedCrash):
        train(overrides(out, *EVERY_2, "train.callbacks=[test_crash_at_end]"))
    assert not (out / "run.json").exists() and (out / "checkpoints" / "checkpoint-8").is_dir()
    train(overrides(out, *EVERY_2))
    assert_same_run(reference, out, STEPS)
    assert not (out / "checkpoints" / "checkpoint-9").exists()
