"""Failures mid-run: NaN / inf losses and gradients (train.nan_policy) and a full disk while a
checkpoint is written. Each leaves the last good checkpoint intact and says what happened."""

from __future__ import annotations

import errno
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import Trainer, TrainerCallback

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.errors import TrainingError
from tunesmith.training import register_callback
from tunesmith.training.checkpoints import STAGING, complete_checkpoints, incomplete_reason


def train(overrides: list[str]):
    return FineTuner(load_config(overrides=overrides)).train()


def examples_of(inputs):
    """The token ids of each example in a batch: padded rows, or padding-free rows whose examples
    start where ``position_ids`` restart at 0."""
    if "attention_mask" in inputs:
        return [[t for t, keep in zip(ids.tolist(), mask.tolist()) if keep]
                for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
    rows = []
    for ids, positions in zip(inputs["input_ids"].tolist(), inputs["position_ids"].tolist()):
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
        rows += [ids[a:b] for a, b in zip(starts, starts[1:])]
    return rows


@pytest.fixture
def poison(monkeypatch):
    """``poison({4: "loss"})``: the given optimizer steps get a NaN loss and NaN gradients ("loss"),
    NaN gradients only ("grads") or an inf loss only ("inf"). Returns the batches of poisoned steps."""
    seen: dict[int, list[list[int]]] = {}

    def install(plan: dict[int, str]) -> dict[int, list[list[int]]]:
        original = Trainer.training_step

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = original(self, model, inputs, num_items_in_batch)
            kind = plan.get(self.state.global_step + 1)
            if kind is None:
                return loss
            rows = examples_of(inputs)
            seen.setdefault(self.state.global_step + 1, []).append(rows)
            if kind in ("loss", "grads"):
                for param in model.parameters():
                    if param.grad is not None:
                        param.grad.fill_(float("nan"))
            if kind == "loss":
                return loss * float("nan")
            if kind == "inf":
                return loss * float("inf")
            return loss

        monkeypatch.setattr(Trainer, "training_step", training_step)
        return seen

    return install


def test_nan_stops_with_step_examples_and_last_good_checkpoint(overrides, tmp_path, poison):
    seen = poison({4: "loss"})
    out = tmp_path / "run"
    with pytest.raises(TrainingError) as err:
        train(overrides(out))
    message = str(err.value)
    assert "train.nan_policy=stop: at optimizer step 4" in message and "the loss was nan" in message
    assert f"{out / 'checkpoints' / 'checkpoint-3'} (step 3)" in message and "train.nan_policy=skip" in message
    assert [c.step for c in complete_checkpoints(out / "checkpoints")] == [1, 2, 3]  # the bad update never saved
    indices = json.loads(re.search(r"training-set indices (\[[\d, ]*\])", message).group(1))
    # The reported indices are the poisoned micro-batch's examples: read them back from the dataset.
    tuner_data = _train_dataset(overrides(tmp_path / "peek"))
    assert [tuner_data[i]["input_ids"] for i in indices] == seen[4][0]


def _train_dataset(overrides: list[str]):
    from tunesmith.api.data_entry import build_datasets
    from tunesmith.models.loading import load_tokenizer

    cfg = load_config(overrides=overrides)
    return build_datasets(cfg.data, load_tokenizer(cfg.model.name_or_path), cfg.train.seed, "causal_lm").train


def test_nan_skip_counts_skips_and_leaves_the_weights_alone(overrides, tmp_path, poison):
    poison({4: "grads", 6: "inf"})
    out = tmp_path / "run"
    train(overrides(out, "train.nan_policy=skip"))
    record = json.loads((out / "run.json").read_text())
    assert record["nan_skipped_steps"] == 2 and record["global_step"] == 8
    adapters = {c.step: load_file(str(c.path / "adapter_model.safetensors"))
                for c in complete_checkpoints(out / "checkpoints")}
    for skipped in (4, 6):
        before, after = adapters[skipped - 1], adapters[skipped]
        assert all(torch.equal(before[k], after[k]) for k in before), f"step {skipped} changed the weights"
    assert not all(torch.equal(adapters[4][k], adapters[5][k]) for k in adapters[4])  # step 5 trained
    assert all(torch.isfinite(t).all() for t in load_file(str(out / "adapter_model.safetensors")).values())
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("nan_skipped_steps", 0) for r in logged) == 2
    # The inf loss of step 6 stays out of the logged losses (filtered on the device, as transformers would).
    assert all(math.isfinite(r["loss"]) for r in logged if "loss" in r)


# --- a full disk -----------------------------------------------------------------------------------


def _assert_previous_checkpoint_intact(out: Path, step: int) -> None:
    found = complete_checkpoints(out / "checkpoints")
    assert [c.step for c in found] == list(range(1, step + 1))
    assert all(incomplete_reason(c.path) is None for c in found)
    assert not list((out / "checkpoints").glob(f"checkpoint-{step + 1}"))
    assert not list((out / "checkpoints" / STAGING).glob("checkpoint-*"))  # the half-written one is gone
    load_file(str(found[-1].path / "adapter_model.safetensors"))
    torch.load(found[-1].path / "optimizer.pt", weights_only=True)


def test_injected_write_failure_keeps_the_previous_checkpoint(overrides, tmp_path, monkeypatch):
    original = Trainer._save_optimizer_and_scheduler

    def failing(self, output_dir):
        if self.state.global_step == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", failing)
    out = tmp_path / "run"
    with pytest.raises(TrainingError) as err:
        train(overrides(out))
    message = str(err.value)
    assert f"could not write checkpoint {out / 'checkpoints' / 'checkpoint-3'}: No space left on device" in message
    assert f"previous checkpoint {out / 'checkpoints' / 'checkpoint-2'} (step 2) is intact" in message
    _assert_previous_checkpoint_intact(out, 2)
    monkeypatch.undo()
    train(overrides(out))  # the same command resumes and finishes
    assert json.loads((out / "run.json").read_text())["global_step"] == 8


@register_callback("test_fill_disk", overwrite=True)
class FillDisk(TrainerCallback):
    """After checkpoint ``step`` is saved, fill the disk of ``path`` up to ``leave`` bytes."""

    def __init__(self, path: str, step: int, leave: int) -> None:
        self.path, self.step, self.leave = Path(path), step, leave

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            free = shutil.disk_usage(self.path).free
            with open(self.path / "filler.bin", "wb") as fh:
                fh.write(b"\0" * max(free - self.leave, 0))


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs (needs permission to mount; skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_gives_a_clear_error_and_keeps_the_previous_checkpoint(overrides, small_disk, capfd):
    out = small_disk / "run"
    args = ("train.save_limit=2", "train.callbacks=[test_fill_disk]",
            f"train.callback_args={{test_fill_disk: {{path: '{small_disk}', step: 2, leave: 1048576}}}}")
    with pytest.raises(TrainingError) as err:
        train(overrides(out, *args))
    message = str(err.value)
    assert "could not write checkpoint" in message and "checkpoint-3" in message and "MiB free" in message
    assert "previous checkpoint" in message and "checkpoint-2 (step 2) is intact" in message
    assert "warning: only" in capfd.readouterr().err  # the free-space check warned before the write
    _assert_previous_checkpoint_intact(out, 2)
    (small_disk / "filler.bin").unlink()
    train(overrides(out, "train.save_limit=2"))  # space freed: the same command resumes and finishes
    assert json.loads((out / "run.json").read_text())["global_step"] == 8
