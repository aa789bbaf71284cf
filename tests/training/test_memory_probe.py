"""train.memory_probe: the longest batch runs forward and backward before the first step, training
afterwards is bit-identical to a run without it, and running out of memory names the batch's shape
and the settings to change (in the probe and in a later step)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.errors import ConfigError, TrainingError
from tunesmith.api.choices.training import resolve_memory_probe
from tunesmith.training.memory_probe import (MemorySettings, find_probe_batch, is_out_of_memory, longest_batch,
                                             probe_rows, row_lengths)


def test_longest_batch_takes_the_rows_with_most_tokens_and_always_the_longest_sequence():
    assert longest_batch([(5, 5), (9, 9), (2, 2), (7, 7)], 2).indices == [1, 3]
    # pairs: (tokens of both answers, longer answer); row 2 has the longest answer, rows 0 and 3 the most tokens
    batch = longest_batch([(30, 16), (10, 6), (24, 20), (29, 15), (12, 7)], 2)
    assert batch.indices == [0, 2] and batch.tokens == 54 and batch.longest == 20
    assert longest_batch([(3, 3)], 8).indices == [0]  # fewer rows than a batch


def test_probe_batch_of_pairs_counts_both_answers():
    from datasets import Dataset

    pairs = Dataset.from_list([{"chosen_input_ids": [1] * c, "rejected_input_ids": [2] * r}
                               for c, r in [(3, 4), (9, 2), (5, 5), (2, 10)]])
    assert row_lengths(pairs, ("chosen_input_ids", "rejected_input_ids")) == [(7, 4), (11, 9), (10, 5), (12, 10)]
    batch = find_probe_batch(pairs, "preference", 2, "causal_lm")
    assert batch.indices == [1, 3] and batch.longest == 10
    # a selection over a shuffled dataset (an indices mapping) reads the right rows
    shuffled = pairs.select([3, 2, 1, 0])
    assert find_probe_batch(shuffled, "preference", 1, "causal_lm").indices == [0]


def test_unlearning_rows_are_read_without_drawing_retain_examples():
    from tunesmith.training.unlearning import ForgetRetainRows

    forget = [{"input_ids": [1] * n} for n in (4, 8, 2)]
    retain = [{"input_ids": [7] * n} for n in (3, 6, 5)]
    rows = ForgetRetainRows(forget, retain, seed=0)
    batch = find_probe_batch(rows, "examples", 2, "causal_lm")
    read = probe_rows(rows, batch, 2)
    assert [len(r["input_ids"]) for r in read] == [4, 8]
    assert sorted(len(r["retain_input_ids"]) for r in read) == [5, 6]  # the longest retain examples
    assert not rows._reads  # the seeded retain draws of training are untouched


def test_auto_probes_on_a_gpu_and_refuses_where_it_cannot_work():
    assert resolve_memory_probe("auto", "cuda:0", "examples", "ddp") is True
    assert resolve_memory_probe("auto", "cpu", "examples", "ddp") is False
    assert resolve_memory_probe("on", "cpu", "preference", "ddp") is True
    assert resolve_memory_probe("auto", "cuda", "prompt", "ddp") is False
    with pytest.raises(ConfigError, match="train.memory_probe: on is not possible here: the trainer samples"):
        resolve_memory_probe("on", "cuda", "prompt", "ddp")
    with pytest.raises(ConfigError, match="DeepSpeed"):
        resolve_memory_probe("on", "cuda", "examples", "deepspeed")
    with pytest.raises(ConfigError, match="memory_probe"):
        load_config(overrides=["train.memory_probe=yes"])


def test_out_of_memory_errors_are_recognised():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough "
                                         "memory: you tried to allocate 123 bytes."))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_advice_follows_the_config():
    s = MemorySettings(8, 2, 512, False, "none", "lora", 16, "dpo", "copy")
    text = "; ".join(s.advice())
    assert "train.batch_size=4 with train.grad_accum=4 (now 8 x 2; the same 16 sequences" in text
    assert "data.max_length=256" in text and "train.gradient_checkpointing=true" in text
    assert "peft.method=qlora" in text and "peft.r=8" in text and "reference=precomputed" in text
    done = "; ".join(MemorySettings(1, 1, 128, True, "padding_free", "qlora", 1, "sft").advice())
    assert "batch_size" not in done and "gradient_checkpointing" not in done and "peft.r" not in done
    assert "data.max_length=64" in done


def _tiny_run(tmp_path, name, model_dir, probe, extra):
    cfg = load_config(overrides=[f"model.name_or_path={model_dir}", f"output_dir={tmp_path / name}",
                                 "train.max_steps=3", "train.batch_size=4", "train.lr=1e-2", "train.precision=fp32",
                                 "train.logging_steps=1", "eval.before_after=off", "data.cache=false",
                                 f"train.memory_probe={probe}", *extra])
    run_dir = FineTuner(cfg).train().run_dir
    losses = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    weights = load_file(run_dir / "adapter_model.safetensors")
    return run_dir, [(r["step"], r["loss"]) for r in losses if "loss" in r], weights


RUNS = {  # one run of each kind: supervised (with LoRA dropout), preference pairs, unlearning, classification
    "sft": ("tiny_llama_dir", ["data=arith", "data.max_samples=24", "peft.dropout=0.2"]),
    "dpo": ("tiny_llama_dir", ["data.train=arith-pref", "data.max_samples=16", "train.trainer=dpo", "peft.dropout=0.2"]),
    "grad_diff": ("tiny_llama_dir", ["data=facts-forget", "data.retain=facts-retain", "train.trainer=grad_diff",
                                     "peft.dropout=0.2"]),
    "classification": ("tiny_bert_dir", ["model.task=sequence_classification", "data=sentiment",
                                         "data.max_samples=32", "peft.target_modules=[query,value]"]),
}


@pytest.mark.parametrize("kind", list(RUNS))
def test_training_after_the_probe_is_bit_identical(tmp_path, request, capsys, kind):
    fixture, extra = RUNS[kind]
    model_dir = request.getfixturevalue(fixture)
    probed_dir, probed, probed_weights = _tiny_run(tmp_path, "probed", model_dir, "on", extra)
    assert capsys.readouterr().out.count("Memory probe: the longest batch (") == 1
    _, plain, plain_weights = _tiny_run(tmp_path, "plain", model_dir, "off", extra)
    assert "Memory probe" not in capsys.readouterr().out
    assert probed == plain and len(plain) == 3
    assert probed_weights.keys() == plain_weights.keys()
    assert all(torch.equal(probed_weights[k], plain_weights[k]) for k in plain_weights)
    plan = json.loads((probed_dir / "run.json").read_text())["plan"]
    assert plan["memory_probe"] is True and plan["memory_probe_batch"]["tokens"] > 0
    assert " x " in plan["memory_probe_batch"]["shape"]


class OutOfMemoryAt:
    """A forward hook on every module: the model's training forward pass number ``n`` runs out of memory."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self, module, args, output):
        if type(module).__name__ == "LlamaForCausalLM" and module.training:
            self.calls += 1
            if self.calls == self.n:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


@pytest.mark.parametrize("probe, at, where", [("on", 1, "in the memory probe, before the first step (the longest batch of the training set)"),
                                              ("off", 1, "at step 1"), ("on", 3, "at step 2")])
def test_out_of_memory_names_the_batch_and_the_settings_to_change(tmp_path, tiny_llama_dir, probe, at, where):
    hook = torch.nn.modules.module.register_module_forward_hook(OutOfMemoryAt(at))
    try:
        with pytest.raises(TrainingError) as caught:
            _tiny_run(tmp_path, "oom", tiny_llama_dir, probe, ["data=arith", "data.max_samples=24",
                                                              "data.packing=none"])
    finally:
        hook.remove()
    message = str(caught.value)
    assert f"out of memory on cpu {where}: a batch of 4 rows x " in message
    assert "its longest sequence" in message and "OutOfMemoryError: CUDA out of memory" in message
    assert "train.batch_size=2 with train.grad_accum=2" in message and "data.max_length=256" in message
    assert "train.gradient_checkpointing=true" in message and "peft.method=qlora" in message
    assert not (tmp_path / "oom" / "run.json").exists()
