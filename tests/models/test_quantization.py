"""QLoRA and int8 bases: loading kwargs, training preparation, gradient correctness, dequantizing.

The gradient tests load a tiny random Llama 4-bit (nf4, double quant, bf16 compute) through
``from_pretrained`` with our ``quantization_kwargs``, put LoRA on every linear layer and compare the
gradients with an fp32 reference model whose base weights are the dequantized 4-bit weights.
"""

from __future__ import annotations

import logging
import sys

import pytest

bnb = pytest.importorskip("bitsandbytes")
torch = pytest.importorskip("torch")

from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM  # noqa: E402

from tunesmith.config.schema import PeftConfig, QuantizationConfig  # noqa: E402
from tunesmith.errors import ModelError  # noqa: E402
from tunesmith.models.adapters import apply_adapter  # noqa: E402
from tunesmith.models.quantization import (  # noqa: E402
    dequantized_state_dict,
    guard_cpu_packed_weights,
    is_quantized_method,
    prepare_quantized_for_training,
    quantization_kwargs,
)

VOCAB = 128
# bf16 keeps 8 significant bits (unit roundoff 2^-9 ~ 2e-3). With bf16 compute every 4-bit matmul
# rounds its input and its dequantized weight to bf16, in the forward and again in the backward,
# through 2 layers x 7 projections. Measured worst relative errors: 2e-3 to 5e-3 (shapes 1x1, 2x8,
# 4x32); 2e-2 leaves 4x margin and is still 25x below the 0.5-0.7 of a path that drops the base's
# gradient (test_unguarded_no_grad_eval_breaks_4bit_gradients_on_this_cpu).
GRAD_RTOL = 2e-2


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A random 2-layer Llama (hidden 64, one 64-value quantization block per row) saved to disk."""
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64)
    folder = tmp_path_factory.mktemp("tiny-llama-64")
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def load(folder, method: str = "qlora"):
    kwargs = quantization_kwargs(PeftConfig(method=method), "cpu")
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)


def lora_config() -> LoraConfig:
    # Random A and B (peft's default B = 0 would give A a zero gradient and hide errors in it).
    return LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)


def with_lora(model):
    torch.manual_seed(1)
    return get_peft_model(model, lora_config())


def reference_for(folder, quantized):
    """An fp32 peft model with the same LoRA weights whose base is ``quantized``'s dequantized base."""
    ref = get_peft_model(LlamaForCausalLM(LlamaConfig.from_pretrained(folder)), lora_config())
    ref.load_state_dict(dequantized_state_dict(quantized), strict=True)
    return ref


def gradients(model, ids, targets):
    """(LoRA gradients by name, gradient w.r.t. the input embeddings) of a cross-entropy loss."""
    model.train()
    model.zero_grad(set_to_none=True)
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits
    # Unshifted targets, so that a single token still has a loss.
    torch.nn.functional.cross_entropy(logits.float().reshape(-1, VOCAB), targets.reshape(-1)).backward()
    lora = {name: p.grad.clone() for name, p in model.named_parameters() if "lora_" in name}
    return lora, embeds.grad.clone()


def rel_err(got, want) -> float:
    return ((got - want).norm() / want.norm()).item()


def compare_with_reference(folder, quantized, batch: int, seq: int) -> tuple[float, float]:
    """(worst LoRA-gradient relative error, input-embedding-gradient relative error)."""
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, VOCAB, (batch, seq), generator=gen)
    targets = torch.randint(0, VOCAB, (batch, seq), generator=gen)
    lora_q, embed_q = gradients(quantized, ids, targets)
    # Built after the quantized pass, from the base weights that pass actually used.
    lora_r, embed_r = gradients(reference_for(folder, quantized), ids, targets)
    assert set(lora_q) == set(lora_r) and len(lora_q) == 2 * 2 * 7  # A and B x 2 layers x 7 projections
    # With one token, softmax over a single key is constant: q/k gradients are zero up to rounding
    # (~1e-8 against ~1 elsewhere). Those must stay ~0; a relative error of rounding noise is meaningless.
    scale = max(g.norm() for g in lora_r.values())
    zero = {k for k, g in lora_r.items() if g.norm() < 1e-6 * scale}
    assert all(lora_q[k].norm() < 1e-6 * scale for k in zero)
    assert not zero or seq == 1
    return max(rel_err(lora_q[k], lora_r[k]) for k in lora_r if k not in zero), rel_err(embed_q, embed_r)


def linear4_layers(model):
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def any_packed(model) -> bool:
    return any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in linear4_layers(model))


def no_grad_eval_forward(model):
    """What a before/after evaluation or ``generate`` does to the model between training steps."""
    model.eval()
    with torch.no_grad():
        model(input_ids=torch.randint(0, VOCAB, (2, 5)))


# --- quantization_kwargs -------------------------------------------------------------------------


def test_qlora_kwargs_follow_the_quantization_section():
    kwargs = quantization_kwargs(PeftConfig(method="qlora"), "cpu")
    config = kwargs["quantization_config"]
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert kwargs["device_map"] == {"": "cpu"}

    custom = PeftConfig(method="qlora", quantization=QuantizationConfig("fp4", False, "float16"))
    config = quantization_kwargs(custom, "cuda:1")["quantization_config"]
    assert (config.bnb_4bit_quant_type, config.bnb_4bit_use_double_quant) == ("fp4", False)
    assert config.bnb_4bit_compute_dtype == torch.float16


def test_int8_kwargs_and_unquantized_methods():
    config = quantization_kwargs(PeftConfig(method="int8"), "cpu")["quantization_config"]
    assert config.load_in_8bit and not config.load_in_4bit
    for method in ("lora", "dora", "full"):
        assert quantization_kwargs(PeftConfig(method=method), "cpu") == {}
        assert not is_quantized_method(method)
    assert is_quantized_method("qlora") and is_quantized_method("int8")


def test_missing_bitsandbytes_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    with pytest.raises(ModelError, match="pip install bitsandbytes"):
        quantization_kwargs(PeftConfig(method="qlora"), "cpu")
    assert quantization_kwargs(PeftConfig(method="lora"), "cpu") == {}  # never imports it


# --- QLoRA gradients -----------------------------------------------------------------------------


@pytest.mark.parametrize("batch, seq", [(2, 8), (1, 1)], ids=["training-batch", "single-token"])
def test_qlora_gradients_match_dequantized_fp32_reference(tiny_dir, batch, seq):
    # (1, 1) is batch*seq == 1, the shape older bitsandbytes sent to its gemv kernel; 0.50 has no
    # shape-based branch, and the gradient must be right for it as well.
    model = with_lora(prepare_quantized_for_training(load(tiny_dir), "qlora"))
    lora_err, embed_err = compare_with_reference(tiny_dir, model, batch, seq)
    assert lora_err < GRAD_RTOL, f"LoRA gradients off by {lora_err:.2e}"
    # The input gradient crosses every frozen 4-bit weight: the dequantize+matmul backward.
    assert embed_err < GRAD_RTOL, f"input-embedding gradient off by {embed_err:.2e}"


def test_unguarded_no_grad_eval_breaks_4bit_gradients_on_this_cpu(tiny_dir):
    """The hazard the guard exists for: this fails once bitsandbytes gives gemv_4bit a backward."""
    model = with_lora(load(tiny_dir))
    no_grad_eval_forward(model)
    if not any_packed(model):
        pytest.skip("this CPU (no AVX512-BF16) or bitsandbytes does not repack 4-bit weights for inference")
    with pytest.warns(UserWarning, match="autograd kernel was not registered"):
        lora_err, embed_err = compare_with_reference(tiny_dir, model, 2, 8)
    assert lora_err > 0.1 and embed_err > 0.1


def test_guard_keeps_training_on_the_autograd_path_after_evaluation(tiny_dir):
    model = with_lora(prepare_quantized_for_training(load(tiny_dir), "qlora"))
    before = [m.weight.data.clone() for m in linear4_layers(model)]
    no_grad_eval_forward(model)
    assert not any_packed(model)
    lora_err, embed_err = compare_with_reference(tiny_dir, model, 2, 8)
    assert lora_err < GRAD_RTOL and embed_err < GRAD_RTOL
    assert all(torch.equal(b, m.weight.data) for b, m in zip(before, linear4_layers(model)))


def test_guard_repairs_layers_repacked_before_and_during_training(tiny_dir, caplog):
    base = load(tiny_dir)
    no_grad_eval_forward(base)  # evaluated before preparation
    if not any_packed(base):
        pytest.skip("this CPU (no AVX512-BF16) or bitsandbytes does not repack 4-bit weights for inference")
    model = with_lora(prepare_quantized_for_training(base, "qlora"))
    assert not any_packed(model)
    # Something turns repacking back on and evaluates: the pre-hook must undo it in the next
    # forward that records a graph, before the matmul runs.
    for layer in linear4_layers(model):
        layer.support_avx512bf16_for_cpu = True
    no_grad_eval_forward(model)
    assert any_packed(model)
    with caplog.at_level(logging.WARNING, logger="tunesmith.models.quantization"):
        lora_err, embed_err = compare_with_reference(tiny_dir, model, 2, 8)
    assert "restoring the standard layout" in caplog.text
    assert lora_err < GRAD_RTOL and embed_err < GRAD_RTOL
    assert guard_cpu_packed_weights(model) == 14  # idempotent: 2 layers x 7 projections


def test_qlora_training_step_moves_lora_only(tiny_dir):
    model = prepare_quantized_for_training(load(tiny_dir), "qlora")
    model = apply_adapter(model, PeftConfig(method="qlora", r=4), "causal_lm")
    base = [m.weight.data.clone() for m in linear4_layers(model)]
    lora_b = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    no_grad_eval_forward(model)
    step(model)
    assert all(torch.equal(b, m.weight.data) for b, m in zip(base, linear4_layers(model)))
    params = dict(model.named_parameters())
    assert all(not torch.equal(v, params[n]) for n, v in lora_b.items())


def step(model):
    """One AdamW step on a 2 x 8 token batch."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype.is_floating_point for p in trainable)
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    model.train()
    ids = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(3))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()


# --- preparation ---------------------------------------------------------------------------------


def test_prepare_checks_what_it_is_given(tiny_dir):
    plain = LlamaForCausalLM(LlamaConfig.from_pretrained(tiny_dir))
    assert prepare_quantized_for_training(plain, "lora") is plain
    with pytest.raises(ModelError, match="no Linear4bit layers"):
        prepare_quantized_for_training(plain, "qlora")
    with pytest.raises(ModelError, match="before apply_adapter"):
        prepare_quantized_for_training(with_lora(load(tiny_dir)), "qlora")


# --- int8 ----------------------------------------------------------------------------------------


def row_scales(layer):
    """An 8-bit layer's row scales: on the parameter after loading, on its state after a forward."""
    return layer.weight.SCB if layer.weight.SCB is not None else layer.state.SCB


def test_int8_step_changes_lora_and_not_the_int8_base(tiny_dir):
    model = prepare_quantized_for_training(load(tiny_dir, "int8"), "int8")
    model = apply_adapter(model, PeftConfig(method="int8", r=4), "causal_lm")
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
    assert len(layers) == 14 and all(m.weight.dtype == torch.int8 for m in layers)
    base = [(m.weight.data.clone(), row_scales(m).clone()) for m in layers]
    lora_b = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if "lora_" in n}
    step(model)
    assert all(torch.equal(w, m.weight.data) and torch.equal(s, row_scales(m)) for (w, s), m in zip(base, layers))
    params = dict(model.named_parameters())
    assert all(not torch.equal(v, params[n]) for n, v in lora_b.items())  # peft starts B at 0: A moves next step


# --- dequantized_state_dict ----------------------------------------------------------------------


def original_weights(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def nf4_bound(weight, code, blocksize: int):
    """Largest allowed |dequantized - original| per element: half the widest gap between two nf4
    levels times the block's absmax, plus 2% of the absmax for the 8-bit double-quantized absmax
    (measured: under 1%) and its bf16 copy in the CPU-packed layout (2^-9)."""
    half_step = torch.diff(code.sort().values).max() / 2  # 0.152 for nf4, between -1 and -0.696
    absmax = weight.reshape(-1, blocksize).abs().amax(dim=1, keepdim=True)
    return ((half_step + 0.02) * absmax).expand(-1, blocksize).reshape(weight.shape)


def check_4bit_dequantized(model, folder):
    original = original_weights(folder)
    got = dequantized_state_dict(model)
    assert set(got) == set(LlamaForCausalLM(LlamaConfig.from_pretrained(folder)).state_dict())
    quantized = {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert len(quantized) == 14
    for key, want in original.items():
        assert got[key].dtype == torch.float32 and got[key].shape == want.shape, key
        if key not in quantized:
            assert torch.equal(got[key], want), key
            continue
        state = quantized[key].weight.quant_state
        err = (got[key] - want).abs()
        assert (err <= nf4_bound(want, state.code, state.blocksize)).all(), key
        assert 0 < err.max(), key  # it really is the 4-bit copy


def test_dequantized_state_dict_is_within_an_nf4_step(tiny_dir):
    check_4bit_dequantized(load(tiny_dir), tiny_dir)


def test_dequantized_state_dict_reads_cpu_packed_weights_without_changing_them(tiny_dir):
    model = load(tiny_dir)
    no_grad_eval_forward(model)
    if not any_packed(model):
        pytest.skip("this CPU (no AVX512-BF16) or bitsandbytes does not repack 4-bit weights for inference")
    packed = [m.weight.data.clone() for m in linear4_layers(model)]
    check_4bit_dequantized(model, tiny_dir)
    assert all(torch.equal(p, m.weight.data) for p, m in zip(packed, linear4_layers(model)))
    assert all(m.weight.quant_state.packing_format_for_cpu for m in linear4_layers(model))


def test_dequantized_state_dict_of_int8_is_within_half_a_row_step(tiny_dir):
    original = original_weights(tiny_dir)
    got = dequantized_state_dict(load(tiny_dir, "int8"))
    assert set(got) == set(original)
    for key, want in original.items():
        if not key.endswith("proj.weight"):
            assert torch.equal(got[key], want), key
            continue
        # Rows are scaled to [-127, 127] from their absmax (after a cast to fp16, 2^-11 relative).
        row_step = want.abs().amax(dim=1, keepdim=True) / 127
        assert ((got[key] - want).abs() <= row_step * 0.51 + want.abs() * 2**-10).all(), key
