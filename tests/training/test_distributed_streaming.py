"""A streaming run (data.streaming=true) on two processes (torchrun, gloo on the CPU): each process
trains on its own share of every global batch, so the loss curve is the one-process curve with the
same global batch (2 processes x 4 sequences = 1 process x 8), and the saved stream position counts
the rows of both processes."""

import json
import sys

import pytest

from process_runs import losses, run  # tests/training is on sys.path (its conftest)

LOSS_TOLERANCE = 1e-5  # relative: the same sequences, averaged in another order
STEPS = 6


def train_command(*launcher, model_dir, data, out, batch_size):
    return [*launcher, "-m", "tunesmith", "train", f"model.name_or_path={model_dir}", f"data.train={data}",
            "data.format=alpaca", f"output_dir={out}", f"train.max_steps={STEPS}", f"train.batch_size={batch_size}",
            "train.lr=1e-2", "train.logging_steps=1", "train.precision=fp32", "eval.before_after=off",
            "data.streaming=true", "data.shuffle_buffer=8", "train.save_steps=3"]



@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama_dir):
    tmp = tmp_path_factory.mktemp("ddp-stream")
    rows = [{"instruction": f"Add {a} and {b}.", "output": f"{a} + {b} = {a + b}" + " ok" * (a % 5)}
            for a in range(7) for b in range(5)]  # 35 rows: the 6 steps of 8 rows go past the end once
    data = tmp / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    run(train_command(sys.executable, model_dir=tiny_llama_dir, data=data, out=tmp / "one", batch_size=8), tmp)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541"]
    two = run(train_command(*torchrun, model_dir=tiny_llama_dir, data=data, out=tmp / "two", batch_size=4), tmp)
    return tmp, two


def test_two_processes_stream_the_one_process_batches(runs):
    tmp, two = runs
    assert "4 sequences x 1 accumulation x 2 processes = 8 sequences per optimizer step" in two.stdout
    a, b = losses(tmp / "two"), losses(tmp / "one")
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, STEPS + 1))
    for (step, x), (_, y) in zip(a, b):
        assert abs(x - y) <= LOSS_TOLERANCE * abs(y), (step, x, y)
    position = json.loads((tmp / "two" / "checkpoints" / "checkpoint-3" / "stream_position.json").read_text())
    assert position["rows_out"] == 3 * 8 and position["rows_per_step"] == 8
