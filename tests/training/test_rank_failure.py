"""An error on one process of a torchrun run stops every process within seconds, and the user sees
that process's error once, labelled with its rank, also in torchrun's summary."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TIMEOUT_S = 600  # train.distributed.timeout_s: what a process waiting on a dead peer could wait
BOUND_S = 60  # both processes end well within this (torchrun's own fallback SIGKILL comes after 30 s)

CALLBACKS = '''
import os, signal, time
from transformers import TrainerCallback


class FailOnRankOne(TrainerCallback):
    """Rank 1 fails at step 2 while rank 0 is busy (a long step, an evaluation, a checkpoint)."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step != 2:
            return
        if os.environ["RANK"] == "1":
            raise RuntimeError("rank one cannot go on at step 2")
        time.sleep(300)


class FailWhileRankZeroIsDeaf(FailOnRankOne):
    """As above, but rank 0 cannot be reached by a signal (as when blocked in a collective)."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2 and os.environ["RANK"] == "0":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return super().on_step_end(args, state, control, **kwargs)
'''


def run_two(tmp_path, model_dir, callback, port):
    rows = "\n".join('{"instruction": "Add %d and %d.", "output": "%d"}' % (a, b, a + b)
                     for a in range(6) for b in range(4))
    (tmp_path / "d.jsonl").write_text(rows)
    (tmp_path / "rank_callbacks.py").write_text(CALLBACKS)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               "-m", "tunesmith", "train", f"model.name_or_path={model_dir}", f"data.train={tmp_path / 'd.jsonl'}",
               "data.format=alpaca", f"output_dir={tmp_path / 'run'}", "train.max_steps=6", "train.batch_size=4",
               "train.precision=fp32", "eval.before_after=off", "data.cache=false",
               f"train.distributed.timeout_s={TIMEOUT_S}", f"train.callbacks=[rank_callbacks:{callback}]"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[2] / "src")]),
           "TUNESMITH_CACHE": str(tmp_path / "cache")}
    start = time.monotonic()
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    return done, done.stdout + done.stderr, time.monotonic() - start


@pytest.mark.slow
def test_an_error_on_rank_1_stops_both_ranks_and_shows_that_error(tmp_path, tiny_llama_dir):
    done, output, seconds = run_two(tmp_path, tiny_llama_dir, "FailOnRankOne", 29541)
    assert done.returncode != 0
    assert seconds < BOUND_S, output[-3000:]  # rank 0 was asleep for 300 s: it was stopped, not waited for
    # rank 1's error, once, with its rank; in torchrun's summary too (its error file)
    assert output.count("internal error on rank 1 of 2: RuntimeError: rank one cannot go on at step 2") == 1, output
    assert "RuntimeError: rank one cannot go on at step 2" in output.split("Root Cause")[1], output[-3000:]
    # rank 0 says why it stopped, and does not save a checkpoint as for a SIGTERM of the user's
    assert "stopped: rank 0 of 2 stopped because rank 1 of 2 failed" in output, output[-3000:]
    assert "saving a checkpoint" not in output and not list((tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    assert not (tmp_path / "run" / "run.json").exists()


@pytest.mark.slow
def test_a_rank_that_no_signal_reaches_is_ended_by_the_watchdog(tmp_path, tiny_llama_dir):
    """Rank 0 ignores SIGTERM: the watchdog that reads the failure flag ends it a few seconds after
    rank 1 failed, before torchrun's own SIGKILL (30 s)."""
    done, output, seconds = run_two(tmp_path, tiny_llama_dir, "FailWhileRankZeroIsDeaf", 29543)
    assert done.returncode != 0 and seconds < BOUND_S, output[-3000:]
    assert "internal error on rank 1 of 2: RuntimeError: rank one cannot go on at step 2" in output
    assert "stopped: rank 0 of 2 stopped because rank 1 of 2 failed" in output, output[-3000:]
