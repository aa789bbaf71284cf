"""Padding-free attention on CUDA: the batch carries its example boundaries, the kernel choice
follows the device, and (on a GPU) one variable-length flash call per layer gives the same
outputs and gradients as transformers' masked SDPA over the whole row."""

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tunesmith.api.choices.batching import build_collator
from tunesmith.data.collators import PackedCollator
from tunesmith.data.packing import pack_examples
from tunesmith.data.segments import boundaries_from_positions, example_lengths_in_row
from tunesmith.errors import ConfigError
from tunesmith.training import varlen_attention
from tunesmith.api.choices.training import attention_kwargs, choose_attention
from tunesmith.training.varlen_attention import cumulative_lengths, varlen_training_attention


def tiny_llama(heads=4, kv_heads=2, **extra):
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32 * heads // 4 * 2, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=97,
                         max_position_embeddings=256, attn_implementation="sdpa", **extra)
    return LlamaForCausalLM(config)


def examples(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, 97, (n,), generator=g).tolist(),
             "labels": torch.randint(0, 97, (n,), generator=g).tolist()} for n in lengths]


def packed_batch(rows, layout, block):
    """One padding-free row, or packed blocks of at most ``block`` tokens (several rows), with boundaries."""
    collate = PackedCollator(pad_token_id=0, pad_to_multiple_of=8, sequence_boundaries=True)
    if layout == "one_row":
        return collate(rows)
    blocks, _ = pack_examples(rows, block)
    batch = collate([{k: b[k] for k in ("input_ids", "labels", "position_ids")} for b in blocks])
    assert batch["input_ids"].shape[0] > 1
    return batch


# --- boundaries: the collator's lists and the device computation agree --------------------------


@pytest.mark.parametrize("positions", [
    [[0, 1, 2, 0, 1]],
    [[0, 1, 2, 0, 1, 0, 1, 2]],  # a row that ends in a pad segment
    [[0, 0, 0, 1]],  # one-token examples
    [[0, 1, 2, 3], [0, 1, 0, 1]],  # two rows (packed blocks)
])
def test_cumulative_lengths_match_the_collators(positions):
    from_lists = boundaries_from_positions(positions)
    on_device = cumulative_lengths(torch.tensor(positions))
    assert from_lists["cu_seq_lens_q"].tolist() == on_device.tolist()
    assert from_lists["cu_seq_lens_q"].dtype == on_device.dtype == torch.int32
    lengths = [n for row in positions for n in example_lengths_in_row(row)]
    assert from_lists["max_length_q"] == from_lists["max_length_k"] == max(lengths)
    assert on_device[-1].item() == sum(len(r) for r in positions)


def test_example_lengths_follow_the_segment_rule():
    from tunesmith.training.segment_attention import segment_bounds

    for row in ([0, 1, 2, 0, 1], [0, 1, 0, 0, 1, 2], [0, 1, 2, 3, 0, 1, 2]):
        bounds = segment_bounds(torch.tensor([row]))[0]
        assert example_lengths_in_row(row) == [b - a for a, b in bounds]


def test_packed_collator_adds_boundaries_only_when_asked():
    rows = examples([3, 2])
    plain = PackedCollator(pad_token_id=0)(rows)
    assert "cu_seq_lens_q" not in plain
    batch = PackedCollator(pad_token_id=0, pad_to_multiple_of=8, sequence_boundaries=True)(rows)
    # 5 tokens padded to 8: the pad segment of 3 is an example of its own
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5, 8]
    assert batch["cu_seq_lens_k"] is batch["cu_seq_lens_q"]
    assert batch["max_length_q"] == batch["max_length_k"] == 3
    assert torch.equal(batch["input_ids"], PackedCollator(pad_token_id=0, pad_to_multiple_of=8)(rows)["input_ids"])


def test_build_collator_passes_boundaries_to_padding_free_batches_only():
    class Tokenizer:
        pad_token_id = 0

    packed = build_collator("auto", "causal_lm", Tokenizer(), "padding_free", "cuda", sequence_boundaries=True)
    assert isinstance(packed, PackedCollator) and packed.sequence_boundaries
    padded = build_collator("auto", "causal_lm", Tokenizer(), "none", "cuda", sequence_boundaries=True)
    assert "cu_seq_lens_q" not in padded(examples([3, 2]))


# --- the choice per device -------------------------------------------------------------------------


def test_auto_never_picks_a_cuda_kernel_on_a_cpu():
    model = tiny_llama()
    for precision in ("bf16", "fp32"):
        choice = choose_attention("auto", "cpu", precision, True, model, 512)
        assert choice.kernel == "segments" and not choice.sequence_boundaries
    assert choose_attention("auto", "cpu", "bf16", False, model, 512).kernel == "sdpa"


def test_auto_on_cuda_picks_varlen_when_it_can_run(monkeypatch):
    model = tiny_llama()
    monkeypatch.setattr(varlen_attention, "varlen_available", lambda: None)
    choice = choose_attention("auto", "cuda", "bf16", True, model, 512)
    assert choice.kernel == "varlen" and choice.sequence_boundaries
    # fp32 has no flash kernel: the block-masked SDPA, never the per-example loop, on a GPU
    fp32 = choose_attention("auto", "cuda:0", "fp32", True, model, 512)
    assert fp32.kernel == "sdpa" and "bf16 or fp16" in fp32.reason
    assert choose_attention("auto", "cuda", "bf16", False, model, 512).kernel == "sdpa"


def test_sliding_window_and_head_size_limits(monkeypatch):
    monkeypatch.setattr(varlen_attention, "varlen_available", lambda: None)
    from transformers import MistralConfig, MistralForCausalLM

    mistral = MistralForCausalLM(MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                               num_attention_heads=4, num_key_value_heads=2, vocab_size=97,
                                               sliding_window=64, attn_implementation="sdpa"))
    assert choose_attention("auto", "cuda", "bf16", True, mistral, 64).kernel == "varlen"
    longer = choose_attention("auto", "cuda", "bf16", True, mistral, 128)
    assert longer.kernel == "sdpa" and "sliding window of 64" in longer.reason


def test_explicit_kernels_fail_early_where_they_cannot_run():
    model = tiny_llama()
    with pytest.raises(ConfigError, match="train.attention: 'varlen' runs on CUDA GPUs only"):
        attention_kwargs("varlen", "cpu")
    assert attention_kwargs("varlen", "cuda") == {} and attention_kwargs("segments", "cpu") == {}
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="train.attention: 'varlen' cannot run here: no CUDA device"):
            choose_attention("varlen", "cuda", "bf16", True, model, 512)
    with pytest.raises(ConfigError, match="padding-free row, but these batches are padded"):
        choose_attention("segments", "cpu", "bf16", False, model, 512)
    assert choose_attention("segments", "cpu", "bf16", True, model, 512).kernel == "segments"
    assert choose_attention("eager", "cpu", "bf16", True, model, 512).kernel == "eager"


def test_a_cuda_kernel_with_a_cpu_device_fails_in_validation():
    from tunesmith.config import load_config

    with pytest.raises(ConfigError, match="train.attention: 'varlen' runs on CUDA GPUs only, and model.device is 'cpu'"):
        load_config(overrides=["train.attention=varlen", "model.device=cpu"])


def test_varlen_is_switched_on_for_training_only():
    model = tiny_llama()
    with varlen_training_attention(model):
        assert model.config._attn_implementation == varlen_attention.NAME
    assert model.config._attn_implementation == "sdpa"


# --- the plumbing on a CPU, with a reference kernel in place of the CUDA one --------------------------


def reference_kernel(with_gqa_flag):
    """A stand-in for ``varlen_attn`` with the same layout: (tokens, heads, dim) and cumulative lengths."""
    calls = []

    def kernel(q, k, v, cu_q, cu_k, max_q, max_k, scale=None, window_size=None, enable_gqa=False):
        calls.append((cu_q.tolist(), max_q, q.shape[1], k.shape[1]))
        assert window_size in (None, (-1, 0))
        assert max_q == max(b - a for a, b in zip(cu_q.tolist(), cu_q.tolist()[1:]))
        out = []
        for a, b in zip(cu_q.tolist(), cu_q.tolist()[1:]):
            out.append(torch.nn.functional.scaled_dot_product_attention(
                q[a:b].transpose(0, 1), k[a:b].transpose(0, 1), v[a:b].transpose(0, 1), is_causal=True,
                scale=scale, enable_gqa=enable_gqa).transpose(0, 1))
        return torch.cat(out)

    if with_gqa_flag:
        def with_flag(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False):
            return kernel(q, k, v, cu_q, cu_k, max_q, max_k, scale=scale, window_size=window_size,
                          enable_gqa=enable_gqa)
        return with_flag, calls

    def without_flag(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, is_causal=False):
        assert is_causal and q.shape[1] == k.shape[1]  # kv heads repeated by the caller
        return kernel(q, k, v, cu_q, cu_k, max_q, max_k, scale=scale)
    return without_flag, calls


@pytest.mark.parametrize("with_gqa_flag", [True, False])
@pytest.mark.parametrize("layout", ["one_row", "blocks"])
def test_varlen_plumbing_matches_masked_sdpa(monkeypatch, with_gqa_flag, layout):
    import inspect

    kernel, calls = reference_kernel(with_gqa_flag)
    params = inspect.signature(kernel).parameters
    monkeypatch.setattr(varlen_attention, "_kernel", lambda: (kernel, "enable_gqa" in params, "is_causal" in params))
    model = tiny_llama(4, 2).train()
    batch = packed_batch(examples([7, 3, 12, 1, 9, 5]), layout, 16)
    plain = {k: v for k, v in batch.items() if not k.startswith(("cu_seq", "max_length"))}
    reference = copy.deepcopy(model)
    ref = reference(**plain)
    ref.loss.backward()
    with varlen_training_attention(model):
        out = model(**batch)
        out.loss.backward()
        assert len(calls) == model.config.num_hidden_layers
        assert calls[0][0] == batch["cu_seq_lens_q"].tolist()
        calls.clear()
        from_positions = model(**plain)  # no lengths in the batch: computed from position_ids
        assert calls[0][0] == batch["cu_seq_lens_q"].tolist()
    real = batch["labels"] != -100
    assert torch.allclose(out.logits[real], ref.logits[real], atol=1e-5)
    assert torch.allclose(from_positions.logits[real], ref.logits[real], atol=1e-5)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name


# --- on a GPU: the same numbers as the masked SDPA ---------------------------------------------------


def loss_and_grads(model, batch):
    model.zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(**batch)
    out.loss.backward()
    return out.logits.detach().float(), {n: p.grad.float().clone() for n, p in model.named_parameters()
                                         if p.grad is not None}


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["one_row", "blocks"])
@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (4, 4)])
def test_varlen_matches_masked_sdpa_on_cuda(layout, heads, kv_heads):
    model = tiny_llama(heads, kv_heads).cuda().train()
    batch = packed_batch(examples([7, 3, 12, 1, 9, 5, 30]), layout, 32)
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
    plain = {k: v for k, v in batch.items() if not k.startswith(("cu_seq", "max_length"))}
    ref_logits, ref_grads = loss_and_grads(model, plain)  # transformers' block mask over the row
    calls = []
    original = varlen_attention._kernel

    def counted():
        calls.append(1)
        return original()

    varlen_attention._kernel = counted
    try:
        with varlen_training_attention(model):
            calls.clear()  # registering reads the kernel once
            logits, grads = loss_and_grads(model, batch)
            no_lengths, _ = loss_and_grads(model, plain)  # lengths read from position_ids instead
    finally:
        varlen_attention._kernel = original
    assert len(calls) == 2 * model.config.num_hidden_layers
    real = batch["labels"] != -100
    assert torch.allclose(logits[real], ref_logits[real], atol=3e-2, rtol=3e-2)
    assert torch.allclose(no_lengths[real], logits[real], atol=1e-3)
    for name, grad in ref_grads.items():
        assert torch.allclose(grads[name], grad, atol=5e-2, rtol=5e-2), name


@pytest.mark.gpu
def test_training_step_on_cuda_needs_no_host_sync_for_attention():
    model = tiny_llama().cuda().train()
    batch = PackedCollator(pad_token_id=0, pad_to_multiple_of=8, sequence_boundaries=True)(examples([20, 9, 14]))
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items() if k != "labels"}
    with varlen_training_attention(model):
        model(**batch)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(**batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out.logits).all()
