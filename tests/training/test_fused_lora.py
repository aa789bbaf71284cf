"""``train.lora_kernel=fused``: LoRA linear layers in one autograd step give peft's outputs and
gradients, fall back to peft's forward in every state they do not cover, and are put back after."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from tunesmith.training.fused_lora import LoraLinearFunction, fusable, fused_lora_layers


class Block(torch.nn.Module):
    """Two layers in a row (the second's input needs a gradient), one with a bias."""

    def __init__(self, width=24, hidden=40):
        super().__init__()
        self.up = torch.nn.Linear(width, hidden, bias=True)
        self.down = torch.nn.Linear(hidden, width, bias=False)

    def forward(self, x):
        return self.down(torch.nn.functional.silu(self.up(x)))


def lora_block(seed=0, **config):
    torch.manual_seed(seed)
    options = dict(r=4, lora_alpha=8, target_modules=["up", "down"], init_lora_weights=False)
    options.update(config)
    return get_peft_model(Block(), LoraConfig(**options))


def run(model, x, fused, autocast=False):
    """Output, input gradient and the trainable parameters' gradients of one forward and backward."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    with fused_lora_layers(model, fused), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(x)
    (out.float() * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.detach().float(), x.grad.clone(), grads


def close(a, b, rtol):
    return all(((u - v).norm() / v.norm().clamp_min(1e-12)).item() < rtol for u, v in zip(a, b))


def assert_same(got, want, rtol):
    assert close([got[0], got[1]], [want[0], want[1]], rtol)
    assert got[2].keys() == want[2].keys()
    assert close([got[2][k] for k in want[2]], [want[2][k] for k in want[2]], rtol)


def test_in_fp32_outputs_and_gradients_are_peft_s():
    model, x = lora_block(), torch.randn(3, 5, 24)
    assert_same(run(model, x, True), run(model, x, False), rtol=1e-5)


def test_under_bf16_autocast_it_is_as_close_to_fp32_as_peft_is():
    model, x = lora_block(), torch.randn(3, 5, 24)
    exact = run(model, x, False)
    fused, peft_bf16 = run(model, x, True, autocast=True), run(model, x, False, autocast=True)
    assert fused[0].dtype == peft_bf16[0].dtype
    assert_same(fused, peft_bf16, rtol=2e-2)
    for got in (fused, peft_bf16):
        assert_same(got, exact, rtol=2e-2)


def test_bf16_frozen_weights_under_autocast_as_a_cpu_run_holds_them():
    model, x = lora_block(), torch.randn(2, 7, 24)
    for module in model.modules():
        if fusable(module):
            module.base_layer.weight.data = module.base_layer.weight.data.bfloat16()
    assert_same(run(model, x, True, autocast=True), run(model, x, False, autocast=True), rtol=2e-2)


def test_dropout_keeps_peft_s_gradients_for_the_same_mask():
    model, x = lora_block(lora_dropout=0.5), torch.randn(2, 4, 24)
    model.train()
    torch.manual_seed(5)
    fused = run(model, x, True)
    torch.manual_seed(5)
    assert_same(fused, run(model, x, False), rtol=1e-5)


def test_a_trainable_base_bias_gets_its_gradient():
    model, x = lora_block(bias="all"), torch.randn(2, 3, 24)
    fused, peft_grads = run(model, x, True), run(model, x, False)
    assert any("bias" in name for name in fused[2])
    assert_same(fused, peft_grads, rtol=1e-5)
    fused, peft_grads = run(model, x, True, autocast=True), run(model, x, False, autocast=True)
    assert all(fused[2][name].dtype == torch.float32 for name in fused[2])
    assert_same(fused, peft_grads, rtol=2e-2)


def test_an_input_that_needs_no_gradient_gets_none():
    model = lora_block()
    x = torch.randn(2, 3, 24)  # no requires_grad: the first layer's input in a model with frozen embeddings
    with fused_lora_layers(model, True):
        model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_layers_are_switched_while_training_and_put_back_after():
    model = lora_block()
    layers = [m for m in model.modules() if fusable(m)]
    assert len(layers) == 2
    with fused_lora_layers(model, True) as switched:
        assert switched == 2
        assert all("forward" in vars(m) for m in layers)
    assert not any("forward" in vars(m) for m in layers)
    with fused_lora_layers(model, False) as switched:
        assert switched == 0
        assert not any("forward" in vars(m) for m in layers)


def test_it_counts_the_function_s_calls_and_falls_back_where_peft_s_forward_is_needed(monkeypatch):
    calls = []
    apply = LoraLinearFunction.apply
    monkeypatch.setattr(LoraLinearFunction, "apply", lambda *a: calls.append(1) or apply(*a))
    model, x = lora_block(), torch.randn(2, 3, 24)
    reference = copy.deepcopy(model)  # the base model alone: adapters that add nothing
    with torch.no_grad():
        for module in reference.modules():
            if fusable(module):
                module.lora_B["default"].weight.zero_()
    with fused_lora_layers(model, True):
        plain = model(x)
        assert len(calls) == 2
        with model.disable_adapter():  # a preference run's reference pass
            base_only = model(x)
        assert len(calls) == 2
        assert torch.allclose(base_only, reference(x), atol=1e-6)
        model.merge_adapter()
        merged = model(x)
        model.unmerge_adapter()
        assert len(calls) == 2
        assert torch.allclose(plain, merged, atol=1e-5)


def test_dora_and_quantized_style_layers_are_not_switched():
    model = lora_block(use_dora=True)
    with fused_lora_layers(model, True) as switched:
        assert switched == 2  # the layers are peft's Linear over nn.Linear...
        x = torch.randn(2, 3, 24)
        calls = []
        apply = LoraLinearFunction.apply
        LoraLinearFunction.apply = lambda *a: calls.append(1) or apply(*a)
        try:
            model(x)
        finally:
            LoraLinearFunction.apply = apply
        assert calls == []  # ...but DoRA is a variant: peft's forward runs


def test_fused_layers_train_a_real_model_like_peft(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM",
                                            init_lora_weights=False))
    ids = torch.randint(0, model.config.vocab_size, (2, 9))

    def step(fused):
        model.zero_grad(set_to_none=True)
        with fused_lora_layers(model, fused):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    (loss_f, grads_f), (loss_p, grads_p) = step(True), step(False)
    assert torch.allclose(loss_f, loss_p, rtol=1e-5)
    assert close([grads_f[k] for k in grads_p], [grads_p[k] for k in grads_p], 1e-4)


@pytest.mark.gpu
def test_on_cuda_in_bf16_it_matches_peft_and_launches_fewer_kernels():
    model = lora_block().cuda().to(torch.bfloat16)
    for name, param in model.named_parameters():
        if param.requires_grad:
            param.data = param.data.float()  # peft keeps adapters in fp32 under a bf16 model
    x = torch.randn(4, 64, 24, device="cuda", dtype=torch.bfloat16)

    def cuda_run(fused):
        model.zero_grad(set_to_none=True)
        xx = x.clone().requires_grad_(True)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            with fused_lora_layers(model, fused), torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(xx)
            out.float().sum().backward()
            torch.cuda.synchronize()
        kernels = sum(e.count for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA)
        return (out.detach().float().cpu(), xx.grad.float().cpu(),
                {n: p.grad.float().cpu() for n, p in model.named_parameters() if p.requires_grad}), kernels

    (fused, fused_kernels), (peft_out, peft_kernels) = cuda_run(True), cuda_run(False)
    assert_same(fused, peft_out, rtol=2e-2)
    assert fused_kernels < peft_kernels


def test_the_run_fuses_plain_lora_on_a_cpu_or_cuda_and_says_why_not_elsewhere():
    from tunesmith.api.choices.training import fuse_lora_layers
    from tunesmith.config import load_config
    from tunesmith.errors import ConfigError

    train = load_config().train
    assert fuse_lora_layers(train, "lora", "cpu") == (
        True, "one autograd step per LoRA linear layer; train.lora_kernel=auto on cpu")
    assert fuse_lora_layers(train, "lora", "cuda:1")[0]
    assert fuse_lora_layers(train, "lora", "mps") == (False, "train.lora_kernel=auto is not measured on mps")
    fused, why = fuse_lora_layers(train, "qlora", "cuda")
    assert not fused and "peft.method=qlora" in why
    sharded = load_config(overrides=["train.distributed.strategy=fsdp"]).train
    assert fuse_lora_layers(sharded, "lora", "cuda") == (False, "train.distributed.strategy=fsdp shards the weights")
    assert fuse_lora_layers(load_config(overrides=["train.lora_kernel=peft"]).train, "lora", "cpu")[0] is False
    forced = load_config(overrides=["train.lora_kernel=fused"]).train
    assert fuse_lora_layers(forced, "lora", "mps") == (
        True, "one autograd step per LoRA linear layer; train.lora_kernel=fused")
    with pytest.raises(ConfigError, match="train.lora_kernel: 'fused' does not apply with peft.method=dora: .*; use auto or peft"):
        fuse_lora_layers(forced, "dora", "cpu")
    forced.distributed.strategy = "deepspeed"
    with pytest.raises(ConfigError, match="strategy=deepspeed shards the weights"):
        fuse_lora_layers(forced, "lora", "cuda")
    with pytest.raises(ConfigError, match="train.lora_kernel: 'fast' is not allowed.*auto, fused, peft"):
        load_config(overrides=["train.lora_kernel=fast"])


def test_the_log_line_says_what_trained_and_a_forced_fused_that_fits_no_layer_is_refused():
    from tunesmith.api.choices.training import lora_kernel_note
    from tunesmith.errors import ConfigError

    reason = "one autograd step per LoRA linear layer; train.lora_kernel=auto on cpu"
    assert lora_kernel_note("auto", "fused", reason, 210) == f"LoRA layers: fused, 210 of them ({reason})"
    assert lora_kernel_note("peft", "peft", "train.lora_kernel=peft", 0) == "LoRA layers: peft's (train.lora_kernel=peft)"
    assert "none of this model's LoRA layers" in lora_kernel_note("auto", "fused", reason, 0)  # e.g. GPT-2's Conv1D
    with pytest.raises(ConfigError, match="train.lora_kernel: 'fused' does not apply: none of this model's"):
        lora_kernel_note("fused", "fused", reason, 0)
