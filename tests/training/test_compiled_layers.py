"""``train.compile``: decoder layers compiled while training give the eager numbers, compile once
for rows of every length, stay eager outside training, are put back afterwards, and are chosen (or
refused) by the run's plan."""

import copy
import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch._dynamo.utils import counters

from tunesmith.api.choices.training import compile_layers, compile_note
from tunesmith.config.schema import TrainSection
from tunesmith.errors import ConfigError
from tunesmith.training import compiled_layers as compiled_module
from tunesmith.training.attention_choice import AttentionChoice
from tunesmith.training.compiled_layers import compile_unavailable, compiled_layers, decoder_layers
from tunesmith.training.speed import speed_context

from tests.training.test_varlen_attention import examples, packed_batch


@pytest.fixture
def backend(monkeypatch):
    """A fresh compile cache with a chosen backend (``aot_eager``: traced and run by autograd, no
    kernels generated, so fp32 numbers are the eager ones)."""
    def use(name):
        monkeypatch.setattr(compiled_module, "BACKEND", name)
        monkeypatch.setattr(compiled_module, "_COMPILED", {})
        torch._dynamo.reset()
        counters.clear()
    yield use
    torch._dynamo.reset()


def lora_llama(layers=3):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=layers,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=97,
                                         max_position_embeddings=256, attn_implementation="sdpa"))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                             init_lora_weights=False))
    return model.train()


BATCHES = [[7, 3, 12, 1, 9], [20, 2], [5, 5, 5, 5, 5, 5, 17]]  # rows of 40, 24 and 48 tokens


def loss_and_grads(model, lengths, autocast=False):
    batch = packed_batch(examples(lengths, seed=len(lengths)), "one_row", 64)
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(**batch).loss
    loss.backward()
    return loss.detach().float(), {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}


def train_steps(model, attention="sdpa", fused=False, compiled=True, autocast=False):
    """One step per row of ``BATCHES``; also returns how many graphs were compiled after the first
    step and after all of them."""
    graphs = []
    with speed_context(model, False, AttentionChoice(attention, "test"), fused, compiled) as (_, layers):
        results = []
        for lengths in BATCHES:
            results.append(loss_and_grads(model, lengths, autocast))
            graphs.append(counters["stats"]["unique_graphs"])
    return results, layers, (graphs[0], graphs[-1])


def assert_close(got, want, tol):
    for (loss, grads), (ref_loss, ref_grads) in zip(got, want):
        assert abs(loss - ref_loss) <= tol * abs(ref_loss)
        assert grads.keys() == ref_grads.keys()
        for name, grad in grads.items():
            assert (grad - ref_grads[name]).norm() <= tol * ref_grads[name].norm() + 1e-6, name


@pytest.mark.parametrize("attention,fused", [("sdpa", False), ("sdpa", True), ("segments", True)])
def test_compiled_layers_give_eager_numbers_and_compile_once_for_every_length(backend, attention, fused):
    backend("aot_eager")
    model = lora_llama()
    eager, _, _ = train_steps(copy.deepcopy(model), attention, fused, compiled=False)
    got, layers, (first, last) = train_steps(model, attention, fused)
    assert layers == 3
    assert_close(got, eager, 1e-5)
    # The first step compiled every graph, with a dynamic length; rows of other lengths compile
    # nothing more. With sdpa a layer is one graph: one for the first layer (its input needs no
    # gradient) and one for the others. segments' attention runs eagerly between the parts.
    assert first == last and first == 2 if attention == "sdpa" else first == last > 2


def worst_error(got, want):
    """The largest relative error of a loss or a gradient of ``got`` against ``want``."""
    errors = []
    for (loss, grads), (ref_loss, ref_grads) in zip(got, want):
        errors.append(abs(loss - ref_loss) / abs(ref_loss))
        errors += [(grads[n] - g).norm() / g.norm() for n, g in ref_grads.items()]
    return max(float(e) for e in errors)


def test_compiled_with_inductor_on_the_cpu_under_bf16_autocast_is_as_close_to_fp32_as_eager(backend):
    if compile_unavailable("cpu"):
        pytest.skip(compile_unavailable("cpu"))
    backend("inductor")
    model = lora_llama(2)
    exact, _, _ = train_steps(copy.deepcopy(model), "segments", True, compiled=False)
    eager, _, _ = train_steps(copy.deepcopy(model), "segments", True, compiled=False, autocast=True)
    got, layers, (first, last) = train_steps(model, "segments", True, autocast=True)
    assert layers == 2 and first == last
    # the generated kernels round bf16 in another order than the eager ones, not further
    assert worst_error(got, exact) <= 2 * worst_error(eager, exact)


def test_layers_stay_eager_outside_training_and_are_put_back(backend):
    backend("aot_eager")
    model = lora_llama(2)
    layers = decoder_layers(model)
    assert [type(m).__name__ for m in layers] == ["LlamaDecoderLayer"] * 2
    batch = packed_batch(examples([4, 6]), "one_row", 16)
    with compiled_layers(model, True) as switched:
        assert switched == 2 and all("forward" in vars(m) for m in layers)
        model.eval()
        with torch.no_grad():
            model(**batch)
        assert not counters["stats"]  # evaluation did not compile
        twin = copy.deepcopy(model)  # a copy (a preference run's reference model) runs its own layers
        twin_layers = decoder_layers(twin)
        assert all(m.forward.__self__ is m for m in twin_layers)
    assert not any("forward" in vars(m) for m in layers)
    with compiled_layers(model, False) as switched:
        assert switched == 0 and not any("forward" in vars(m) for m in layers)


def test_decoder_layers_lists_outermost_blocks_only():
    class Inner(torch.nn.Module):
        pass

    class Outer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Inner()

    class Model(torch.nn.Module):
        _no_split_modules = ["Outer", "Inner"]

        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([Outer(), Outer()])

    found = decoder_layers(Model())
    assert [type(m).__name__ for m in found] == ["Outer", "Outer"]
    assert decoder_layers(torch.nn.Linear(2, 2)) == []


# --- the plan's choice --------------------------------------------------------------------------


def section(**values):
    train = TrainSection()
    for key, value in values.items():
        setattr(train, key, value)
    return train


def test_auto_keeps_layers_eager_where_compiling_was_not_measured_to_pay():
    off, reason = compile_layers(section(), "cpu")
    assert not off and reason.startswith("train.compile=auto: eager on cpu (measured on SmolLM2-135M: 1.13x")
    assert compile_layers(section(), "mps") == (False, "train.compile=auto: eager on mps (not measured there)")
    assert compile_layers(section(compile="off"), "cuda") == (False, "train.compile=off")


def test_auto_compiles_on_a_measured_device_unless_it_cannot(monkeypatch):
    from tunesmith.api.choices import training

    monkeypatch.setattr(training, "COMPILE_DEVICES", ("cuda",))
    monkeypatch.setattr(compiled_module, "compile_unavailable", lambda device: None)
    assert compile_layers(section(), "cuda:0") == (True, "train.compile=auto on cuda")
    sharded = section()
    sharded.distributed.strategy = "fsdp"
    assert compile_layers(sharded, "cuda") == (False, "train.compile=auto: eager (train.distributed.strategy=fsdp "
                                                      "shards the weights, and compiled layers are supported "
                                                      "with ddp only)")
    reason = compile_layers(section(gradient_checkpointing=True), "cuda")
    assert reason[0] is False and "gradient_checkpointing" in reason[1]


def test_on_compiles_or_says_why_it_cannot(monkeypatch):
    monkeypatch.setattr(compiled_module, "compile_unavailable", lambda device: None)
    assert compile_layers(section(compile="on"), "cpu") == (True, "train.compile=on")
    sharded = section(compile="on")
    sharded.distributed.strategy = "deepspeed"
    with pytest.raises(ConfigError, match="train.compile: 'on' cannot run here: .*deepspeed.*use auto or off"):
        compile_layers(sharded, "cuda")
    with pytest.raises(ConfigError, match="train.gradient_checkpointing=true: a checkpointed layer does not compile"):
        compile_layers(section(compile="on", gradient_checkpointing=True), "cpu")
    monkeypatch.setattr(compiled_module, "compile_unavailable", lambda device: "no C++ compiler found")
    with pytest.raises(ConfigError, match="train.compile: 'on' cannot run here: no C\\+\\+ compiler found"):
        compile_layers(section(compile="on"), "cpu")


def test_compile_unavailable_names_the_missing_tool(monkeypatch):
    import importlib.util
    import shutil

    monkeypatch.setattr(compiled_module, "_python_headers", lambda: False)
    assert "Python.h" in compile_unavailable("cuda")
    monkeypatch.setattr(compiled_module, "_python_headers", lambda: True)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "no C++ compiler" in compile_unavailable("cpu")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "triton" else real(name))
    assert "triton" in compile_unavailable("cuda:0")


def test_the_note_says_what_was_compiled_and_refuses_on_without_layers():
    assert compile_note("on", True, "train.compile=on", 30).startswith("Compiled layers: 30 decoder layers")
    assert compile_note("auto", False, "why", 0) == "Compiled layers: none, eager (why)"
    with pytest.raises(ConfigError, match="train.compile: 'on' does not apply: the model has no repeated decoder layer"):
        compile_note("on", True, "train.compile=on", 0)


# --- a whole run ----------------------------------------------------------------------------------


RUNS = {  # one run of each kind: supervised with LoRA dropout (and the memory probe, as on a GPU),
    # preference pairs, unlearning, classification (BERT), and GPT-2 (peft's LoRA layers over Conv1D)
    "sft": ("tiny_llama_dir", ["data=arith", "data.max_samples=24", "peft.dropout=0.2", "train.memory_probe=on"]),
    "dpo": ("tiny_llama_dir", ["data.train=arith-pref", "data.max_samples=16", "train.trainer=dpo"]),
    "grad_diff": ("tiny_llama_dir", ["data=facts-forget", "data.retain=facts-retain", "train.trainer=grad_diff"]),
    "classification": ("tiny_bert_dir", ["model.task=sequence_classification", "data=sentiment",
                                         "data.max_samples=32", "peft.target_modules=[query,value]"]),
    "gpt2": ("tiny_gpt2_dir", ["data.train={alpaca_file}", "data.format=alpaca", "data.max_length=64"]),
}


def tiny_run(tmp_path, name, model_dir, setting, extra):
    from safetensors.torch import load_file

    from tunesmith import FineTuner
    from tunesmith.config import load_config

    cfg = load_config(overrides=[f"model.name_or_path={model_dir}", f"output_dir={tmp_path / name}",
                                 "train.max_steps=3", "train.batch_size=4", "train.lr=1e-2", "train.precision=fp32",
                                 "train.logging_steps=1", "eval.before_after=off", "data.cache=false",
                                 f"train.compile={setting}", *extra])
    tuner = FineTuner(cfg)
    run_dir = tuner.train().run_dir
    losses = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return tuner, run_dir, [r["loss"] for r in losses if "loss" in r], load_file(run_dir / "adapter_model.safetensors")


@pytest.mark.parametrize("kind", list(RUNS))
def test_runs_of_every_kind_train_the_same_with_compiled_layers(tmp_path, request, backend, kind):
    fixture, extra = RUNS[kind]
    model_dir = request.getfixturevalue(fixture)
    extra = [e.format(alpaca_file=request.getfixturevalue("alpaca_file")) if "{" in e else e for e in extra]
    backend("aot_eager")
    tuner, run_dir, losses, weights = tiny_run(tmp_path, "compiled", model_dir, "on", extra)
    assert counters["stats"]["unique_graphs"] >= 1  # the layers did go through the compiler
    record = json.loads((run_dir / "run.json").read_text())
    assert record["plan"]["compile_layers"] is True and record["plan"]["compile_reason"] == "train.compile=on"
    assert record["speed"]["compiled_layers"] == len(decoder_layers(tuner.model)) > 0
    assert not any("forward" in vars(m) for m in decoder_layers(tuner.model))
    _, _, eager_losses, eager_weights = tiny_run(tmp_path, "eager", model_dir, "off", extra)
    assert len(losses) == 3 and losses == pytest.approx(eager_losses, rel=1e-4)
    for name, weight in eager_weights.items():
        assert torch.allclose(weights[name], weight, rtol=1e-3, atol=1e-5), name


# --- on a GPU: the variable-length flash kernel inside a compiled layer ----------------------------


@pytest.mark.gpu
def test_varlen_attention_compiles_into_the_layer_on_cuda(backend):
    if compile_unavailable("cuda"):
        pytest.skip(compile_unavailable("cuda"))
    backend("inductor")
    model = lora_llama(3).cuda()
    results = {}
    for compiled in (False, True):
        with speed_context(model, False, AttentionChoice("varlen", "test"), True, compiled):
            runs = []
            for lengths in BATCHES:
                batch = packed_batch(examples(lengths, seed=len(lengths)), "one_row", 64)
                batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
                model.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(**batch).loss
                loss.backward()
                runs.append((loss.detach().float().cpu(), {n: p.grad.float().cpu() for n, p in model.named_parameters()
                                                           if p.grad is not None}))
            results[compiled] = runs
    assert_close(results[True], results[False], 3e-2)
    assert not counters["recompiles"]
    assert not counters["graph_break"]  # the flash kernel is traced, not a break
