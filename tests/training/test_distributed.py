"""The same config on one process and on two (torchrun, gloo on the CPU): the two-process run
completes, only rank 0 writes and prints, and its loss curve matches the one-process run with
the same global batch (2 processes x 4 sequences = 1 process x 8 sequences)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from process_runs import run, losses  # tests/training is on sys.path (its conftest)

# Per-step training loss, two processes vs one: the same sequences are averaged in a different order
# (gradients are summed across processes), so the curves agree to float32 rounding.
LOSS_TOLERANCE = 1e-5  # relative; measured: 1e-7

STEPS = 6


def train_command(*launcher, model_dir, data, out, batch_size):
    return [*launcher, "-m", "tunesmith", "train", f"model.name_or_path={model_dir}", f"data.train={data}",
            "data.format=alpaca", f"output_dir={out}", f"train.max_steps={STEPS}", f"train.batch_size={batch_size}",
            "train.lr=1e-2", "train.logging_steps=1", "train.precision=fp32", "eval.before_after=off",
            "data.cache=false", "train.log_to=[tensorboard]"]



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    rows = [{"instruction": f"Add {a} and {b}.", "output": f"{a} + {b} = {a + b}" + " ok" * (a % 5)}
            for a in range(8) for b in range(6)]
    path = tmp / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


@pytest.fixture(scope="module")
def one_process(data, tiny_llama_dir):
    run(train_command(sys.executable, model_dir=tiny_llama_dir, data=data, out=data.parent / "one", batch_size=8),
        data.parent)
    return data.parent / "one"


@pytest.fixture(scope="module")
def two_runs(data, tiny_llama_dir, one_process):
    tmp = data.parent
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    two = run(train_command(*torchrun, model_dir=tiny_llama_dir, data=data, out=tmp / "two", batch_size=4), tmp)
    return tmp, two, one_process


def test_two_processes_complete_and_only_rank_0_writes(two_runs):
    tmp, two, _ = two_runs
    run_dir = tmp / "two"
    assert (run_dir / "run.json").is_file() and (run_dir / "adapter_model.safetensors").is_file()
    assert (run_dir / "loss_curve.png").is_file()
    steps = [step for step, _ in losses(run_dir)]
    assert steps == list(range(1, STEPS + 1))  # each step logged once: one writer
    assert len(list((run_dir / "tensorboard").iterdir())) == 1  # one event file
    assert two.stdout.count("Run directory:") == 1  # one process prints
    assert "4 sequences x 1 accumulation x 2 processes = 8 sequences per optimizer step" in two.stdout
    assert json.loads((run_dir / "run.json").read_text())["global_step"] == STEPS


def test_loss_curve_matches_one_process_with_the_same_global_batch(two_runs):
    tmp, _, _ = two_runs
    two, one = losses(tmp / "two"), losses(tmp / "one")
    assert [s for s, _ in two] == [s for s, _ in one]
    for (step, a), (_, b) in zip(two, one):
        assert abs(a - b) <= LOSS_TOLERANCE * abs(b), (step, a, b)
    assert one[-1][1] < one[0][1]  # it trained


@pytest.mark.slow
def test_accelerate_launch_runs_the_same_config(data, tiny_llama_dir, one_process):
    """``accelerate launch --multi_gpu`` starts the processes as torchrun does (gloo when there is no GPU)."""
    out = data.parent / "accelerate"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29534"]
    done = run(train_command(*launch, model_dir=tiny_llama_dir, data=data, out=out, batch_size=4), data.parent)
    assert done.stdout.count("Run directory:") == 1 and "x 2 processes = 8 sequences" in done.stdout
    for (step, a), (_, b) in zip(losses(out), losses(one_process)):
        assert abs(a - b) <= LOSS_TOLERANCE * abs(b), (step, a, b)


@pytest.mark.slow
def test_fsdp_on_two_cpu_processes_matches_one_process(data, tiny_llama_dir):
    """train.distributed.strategy=fsdp (FSDP2, full_shard) with full fine-tuning: the shards train
    like one process with the same global batch, and the gathered weights reload as one model."""
    from tunesmith.inference.runs import load_run

    tmp = data.parent
    extra = ["peft=full", "train.lr=1e-3"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29535"]
    run(train_command(*torchrun, model_dir=tiny_llama_dir, data=data, out=tmp / "fsdp", batch_size=4) + extra
        + ["train.distributed.strategy=fsdp"], tmp)
    run(train_command(sys.executable, model_dir=tiny_llama_dir, data=data, out=tmp / "full", batch_size=8) + extra, tmp)
    sharded, whole = losses(tmp / "fsdp"), losses(tmp / "full")
    assert [s for s, _ in sharded] == [s for s, _ in whole]
    for (step, a), (_, b) in zip(sharded, whole):
        assert abs(a - b) <= LOSS_TOLERANCE * abs(b), (step, a, b)
    assert not (tmp / "fsdp" / "training_args.bin").exists()
    model = load_run(tmp / "fsdp").model
    reference = load_run(tmp / "full").model
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4), name


SLOW_DATA = '''
import os, time

def rows(split, seed, n):
    time.sleep(int(os.environ["SLOW_DATA_S"]))  # reading the data takes longer than the timeout
    return [{"instruction": f"Add {a} and {b}.", "output": f"{a} + {b} = {a + b}"} for a in range(6) for b in range(4)]
'''


@pytest.mark.slow
def test_data_preparation_longer_than_the_distributed_timeout_does_not_trip_it(tmp_path, tiny_llama_dir):
    """Reading the data takes 12 s with a 5 s distributed timeout: no process waits for the others
    in a barrier while data is prepared (the cache's file lock lets one tokenize), so the run
    completes."""
    (tmp_path / "slow_data.py").write_text(SLOW_DATA)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29537"]
    command = train_command(*torchrun, model_dir=tiny_llama_dir, data="slow_data:rows", out=tmp_path / "slow",
                            batch_size=4)
    command = [c for c in command if c != "data.cache=false"] + ["train.distributed.timeout_s=5",
                                                                 "train.max_steps=2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "SLOW_DATA_S": "12",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[2] / "src")]),
           "TUNESMITH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "slow" / "run.json").is_file()
