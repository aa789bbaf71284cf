"""Per-example attention for padding-free rows: the same outputs and gradients as transformers'
masked SDPA over the whole row, used only where it applies, and switched off afterwards."""

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tunesmith.data.collators import PackedCollator
from tunesmith.data.packing import pack_examples
from tunesmith.training.segment_attention import (NAME, per_example_attention, segment_attention_unsupported,
                                                  segment_bounds)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=97, max_position_embeddings=256,
                         attn_implementation="sdpa")
    return LlamaForCausalLM(config)


def examples(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, 97, (n,), generator=g).tolist(),
             "labels": torch.randint(0, 97, (n,), generator=g).tolist()} for n in lengths]


def loss_and_grads(model, batch):
    model.zero_grad()
    out = model(**batch)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_bounds_follow_restarting_positions():
    assert segment_bounds(torch.tensor([[0, 1, 2, 0, 1]])) == [[(0, 3), (3, 5)]]
    assert segment_bounds(torch.tensor([[0, 1, 0, 0, 1, 2]])) == [[(0, 2), (2, 3), (3, 6)]]
    assert segment_bounds(torch.tensor([[0, 1, 2]])) == [[(0, 3)]]


@pytest.mark.parametrize("layout", ["one_row", "blocks"])
def test_same_logits_and_gradients_as_masked_sdpa(model, layout):
    model = copy.deepcopy(model).train()
    rows = examples([7, 3, 12, 1, 9, 5])
    collate = PackedCollator(pad_token_id=0)
    if layout == "one_row":  # padding_free: one batch in one row
        batch = collate(rows)
    else:  # pack: blocks of at most 16 tokens, rows of unequal length padded with a pad segment
        blocks, _ = pack_examples(rows, 16)
        batch = collate([{k: b[k] for k in ("input_ids", "labels", "position_ids")} for b in blocks])
        assert batch["input_ids"].shape[0] > 1
    calls = []
    from tunesmith.training import segment_attention as module
    original = module._per_segment
    module._per_segment = lambda *a: calls.append(a[3]) or original(*a)
    try:
        ref_logits, ref_grads = loss_and_grads(model, batch)
        assert not calls  # sdpa with transformers' block-diagonal mask
        with per_example_attention(model, True) as active:
            assert active and model.config._attn_implementation == NAME
            logits, grads = loss_and_grads(model, batch)
        assert len(calls) == 2  # one per layer, in the forward
    finally:
        module._per_segment = original
    assert model.config._attn_implementation == "sdpa"  # restored
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_padded_batches_evaluation_and_generation_keep_sdpa(model):
    model = copy.deepcopy(model)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    packed = PackedCollator(pad_token_id=0)(examples([4, 6]))
    with torch.no_grad():
        model.eval()
        ref_padded = model(input_ids=ids, attention_mask=mask).logits
        ref_packed = model(**packed).logits
        ref_generated = model.generate(input_ids=ids[:1], max_new_tokens=4, do_sample=False)
        with per_example_attention(model, True):
            from tunesmith.training import segment_attention as module
            called = []
            original = module._per_segment
            module._per_segment = lambda *a: called.append(1) or original(*a)
            try:
                torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, ref_padded)
                torch.testing.assert_close(model(**packed).logits, ref_packed)  # eval mode: masked sdpa
                assert torch.equal(model.generate(input_ids=ids[:1], max_new_tokens=4, do_sample=False),
                                   ref_generated)
                model.train()
                torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, ref_padded)
            finally:
                module._per_segment = original
            assert not called


def test_only_for_known_architectures_that_use_sdpa(model):
    assert segment_attention_unsupported(model) is None
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    assert "eager" in segment_attention_unsupported(eager)
    other = copy.deepcopy(model)
    other.config.model_type = "my_llama_variant"
    assert "my_llama_variant" in segment_attention_unsupported(other)
    with per_example_attention(other, True) as active:
        assert not active and other.config._attn_implementation == "sdpa"
    with per_example_attention(model, False) as active:
        assert not active
