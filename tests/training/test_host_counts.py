"""Counts a training batch brings from the host (``tunesmith.training.host_counts``): the same values
transformers and the label-only loss would read back from the device, and a training step that
reads back only what must be read (the NaN guard, once per optimizer step)."""

import json

import pytest
import torch

from tunesmith.training.guarded_trainer import finite_for_log
from tunesmith.training.host_counts import TOKENS, TRAINED_POSITIONS, HostCounts, input_tokens, trained_positions
from tunesmith.training.losses import IGNORE_INDEX, shifted_targets


@pytest.mark.parametrize("labels", [
    [[-100, 5, 6], [-100, -100, 7]],
    [[-100, -100, 4, 9, -100, -100], [-100, 3, -100, -100, -100, -100]],  # rows ending in padding
    [[-100, 1, 2, -100, -100, 8, 9, -100]],  # one padding-free row of two examples and padding
    [[-100, -100, -100]],  # nothing trained
])
def test_trained_positions_are_the_shifted_targets_that_are_trained(labels):
    labels = torch.tensor(labels)
    expected = torch.nonzero(shifted_targets(labels).reshape(-1) != IGNORE_INDEX).reshape(-1)
    assert torch.equal(trained_positions(labels), expected)
    assert trained_positions(torch.tensor([[-100, 5, 6], [-100, -100, 7]])).tolist() == [0, 1, 4]


def test_input_tokens_count_as_transformers_counts_them():
    ids = torch.tensor([[5, 6, 0, 0], [7, 0, 8, 0]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    assert input_tokens({"input_ids": ids, "attention_mask": mask}, pad_token_id=0) == 5  # the mask wins
    assert input_tokens({"input_ids": ids}, pad_token_id=0) == 4
    assert input_tokens({"input_ids": ids}, pad_token_id=None) == 8


def test_the_collator_adds_both_counts_and_leaves_the_batch_alone():
    def collate(rows):
        return {"input_ids": torch.tensor(rows), "labels": torch.tensor(rows) * 0 + torch.tensor([-100, 1, 1])}

    batch = HostCounts(collate, pad_token_id=0)([[4, 0, 0], [4, 5, 6]])
    assert batch[TOKENS] == 4 and batch[TRAINED_POSITIONS].tolist() == [0, 1, 3, 4]
    assert torch.equal(batch["input_ids"], torch.tensor([[4, 0, 0], [4, 5, 6]]))
    plain = HostCounts(lambda rows: {"pixel_values": torch.zeros(1)})([1])  # nothing to count
    assert TOKENS not in plain and TRAINED_POSITIONS not in plain


def test_a_non_finite_loss_is_logged_as_transformers_logs_it():
    accumulated = torch.tensor(6.0)
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert finite_for_log(torch.tensor(bad), accumulated, 2).item() == pytest.approx(6.0 / 3)
    assert finite_for_log(torch.tensor(1.5), accumulated, 2).item() == 1.5


def test_the_token_count_from_the_host_equals_transformers_count(tiny_llama_dir, tmp_path):
    """A run's ``num_input_tokens_seen`` is the same with the host count as with transformers' own."""
    from transformers import Trainer

    from tunesmith.api import FineTuner
    from tunesmith.config import load_config
    from tunesmith.training.guarded_trainer import ReliableTrainerMixin

    rows = [{"instruction": f"Say {i}.", "output": "yes " * (1 + i % 5)} for i in range(24)]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    seen = {}
    for host in (True, False):
        original = ReliableTrainerMixin._track_num_input_tokens
        if not host:
            ReliableTrainerMixin._track_num_input_tokens = Trainer._track_num_input_tokens
        try:
            cfg = load_config(overrides=[f"model.name_or_path={tiny_llama_dir}", f"data.train={data}",
                                         "data.format=alpaca", "data.cache=false", "eval.before_after=off",
                                         "train.max_steps=3", "train.batch_size=4", "model.device=cpu",
                                         f"output_dir={tmp_path / str(host)}"])
            tuner = FineTuner(cfg)
            tuner.train()
            seen[host] = json.loads((tmp_path / str(host) / "run.json").read_text())
        finally:
            ReliableTrainerMixin._track_num_input_tokens = original
    assert seen[True]["global_step"] == 3
    counts = {host: record["resources"]["tokens_seen"] for host, record in seen.items()}
    assert counts[True] == counts[False] > 0


@pytest.mark.gpu
def test_a_cuda_training_step_waits_for_the_gpu_once(tiny_llama_dir, tmp_path):
    """On CUDA, optimizer steps 3-5 of a default run (no logging among them; ``varlen`` attention,
    as ``auto`` picks on CUDA) make exactly one synchronizing call each: the NaN guard's read of the
    losses and gradients. torch's sync debug
    mode reports every such call; the failure lists where they came from."""
    import warnings

    from transformers import TrainerCallback

    from tunesmith.api import FineTuner
    from tunesmith.config import load_config
    from tunesmith.training import register_callback

    rows = [{"instruction": f"Say {i}.", "output": "yes " * (1 + i % 5)} for i in range(48)]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    caught: list = []

    class SyncCensus(TrainerCallback):
        record: object = None

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 2:
                torch.cuda.synchronize()
                self.record = warnings.catch_warnings(record=True)
                caught.extend([self.record.__enter__()])
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5 and self.record is not None:
                torch.cuda.set_sync_debug_mode("default")
                self.record.__exit__(None, None, None)
                self.record = None

    register_callback("test_sync_census", overwrite=True)(SyncCensus)
    cfg = load_config(overrides=[f"model.name_or_path={tiny_llama_dir}", f"data.train={data}", "data.format=alpaca",
                                 "data.cache=false", "eval.before_after=off", "train.max_steps=6", "train.batch_size=4",
                                 "train.logging_steps=100", "model.device=cuda", "train.attention=varlen",
                                 "train.callbacks=[test_sync_census]",
                                 f"output_dir={tmp_path / 'run'}"])
    FineTuner(cfg).train()
    syncs = [w for w in caught[0] if "synchroniz" in str(w.message)]
    where = [f"{w.filename}:{w.lineno}" for w in syncs]
    assert len(syncs) == 3 and all("nan_guard.py" in w for w in where), where
