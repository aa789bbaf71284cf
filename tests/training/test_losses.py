"""The label-only causal-LM loss equals the model's own loss, in value and in gradients.

Tolerances: fp32 runs agree to 1e-5 (relative) in the loss and 1e-4 in every gradient; under bf16
autocast both sides round the same matmuls, so they agree to 1e-3 (the chunked sum adds in
another order).
"""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tunesmith.training.losses import (LabelOnlyLoss, label_only_unsupported, linear_cross_entropy,
                                       shifted_targets)

VOCAB = 300


def tiny_llama(tie: bool = True, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=128,
                         tie_word_embeddings=tie, attn_implementation="sdpa")
    return LlamaForCausalLM(config)


def with_lora(model, **extra):
    from peft import LoraConfig, get_peft_model

    # init_lora_weights=False: B is random, so LoRA changes the outputs and gets real gradients.
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM",
                                            init_lora_weights=False, **extra))


def padded_batch(seed: int = 1) -> dict:
    """Three rows of 24, 17 and 9 tokens, right-padded; prompts (first 5 tokens) are not trained."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (3, 24), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 17:] = 0
    mask[2, 9:] = 0
    labels = ids.clone()
    labels[:, :5] = -100
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def packed_batch(seed: int = 2) -> dict:
    """One row holding three examples (11, 7 and 6 tokens) kept apart by restarting position_ids."""
    g = torch.Generator().manual_seed(seed)
    lengths = (11, 7, 6)
    ids = torch.randint(3, VOCAB, (1, sum(lengths)), generator=g)
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    labels = ids.clone()
    start = 0
    for n in lengths:  # first token of each example and a 2-token prompt are not trained
        labels[0, start:start + 3] = -100
        start += n
    return {"input_ids": ids, "position_ids": positions, "labels": labels, "use_cache": False}


def reference(model, batch, num_items=None):
    """The model's own loss and the trainable parameters' gradients."""
    model.zero_grad()
    kwargs = {"num_items_in_batch": num_items} if num_items is not None else {}
    loss = model(**batch, **kwargs).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def label_only(model, batch, num_items=None, chunk_rows=7, positions=None):
    model.zero_grad()
    loss_fn = LabelOnlyLoss(model, chunk_rows=chunk_rows)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with loss_fn.hidden_states_forward(positions=positions) as active:
        assert active
        outputs = model(**inputs)
        assert outputs.logits.shape[-1] == 32  # hidden states, not vocabulary logits
        loss = loss_fn(outputs, batch["labels"], num_items)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def assert_close(ref, got, loss_tol, grad_tol):
    (ref_loss, ref_grads), (loss, grads) = ref, got
    assert torch.isclose(loss, ref_loss, rtol=loss_tol, atol=0), (loss, ref_loss)
    assert ref_grads.keys() == grads.keys() and ref_grads
    for name, g in ref_grads.items():
        scale = g.abs().max().clamp_min(1e-12)
        assert ((grads[name] - g).abs().max() / scale) < grad_tol, name


@pytest.mark.parametrize("make_batch", [padded_batch, packed_batch], ids=["padded", "packed"])
def test_matches_model_loss_and_gradients_with_lora(make_batch):
    model = with_lora(tiny_llama())
    model.train()
    batch = make_batch()
    assert_close(reference(model, batch), label_only(model, batch), 1e-5, 1e-4)


@pytest.mark.parametrize("make_batch", [padded_batch, packed_batch], ids=["padded", "packed"])
def test_positions_listed_on_the_host_select_the_same_rows(make_batch):
    """The trained positions a batch brings from the host (``host_counts``) give the boolean
    selection's loss and gradients exactly, with and without ``num_items_in_batch``."""
    from tunesmith.training.host_counts import trained_positions

    model = with_lora(tiny_llama())
    model.train()
    batch = make_batch()
    positions = trained_positions(batch["labels"])
    for num_items in (None, torch.tensor(40)):
        masked = label_only(model, batch, num_items)
        listed = label_only(model, batch, num_items, positions=positions)
        assert torch.equal(masked[0], listed[0])
        assert all(torch.equal(masked[1][k], listed[1][k]) for k in masked[1])


def test_num_items_in_batch_divides_the_sum():
    """With gradient accumulation transformers passes the trained tokens of the whole accumulated
    batch; the loss is then the sum over this micro-batch divided by that number."""
    model = with_lora(tiny_llama())
    model.train()
    batch = padded_batch()
    total = torch.tensor(97)
    ref = reference(model, batch, total)
    got = label_only(model, batch, total)
    assert_close(ref, got, 1e-5, 1e-4)
    own_count = int((shifted_targets(batch["labels"]) != -100).sum())
    mean = label_only(model, batch)[0]
    assert torch.isclose(got[0], mean * own_count / 97, rtol=1e-5)


def test_full_fine_tuning_trains_the_tied_head_through_the_chunks():
    model = tiny_llama(tie=True)
    model.train()
    batch = padded_batch()
    assert_close(reference(model, batch), label_only(model, batch), 1e-5, 1e-4)
    untied = tiny_llama(tie=False)
    untied.train()
    assert_close(reference(untied, batch), label_only(untied, batch), 1e-5, 1e-4)


def test_bf16_autocast_matches_the_model_under_autocast():
    model = with_lora(tiny_llama())
    model.train()
    batch = padded_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = reference(model, batch)
        got = label_only(model, batch)
    assert_close(ref, got, 1e-3, 1e-3)


def test_linear_cross_entropy_chunks_agree_with_one_matmul():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(50, 16, generator=g, requires_grad=True)
    weight = torch.randn(40, 16, generator=g, requires_grad=True)
    bias = torch.randn(40, generator=g, requires_grad=True)
    targets = torch.randint(0, 40, (50,), generator=g)
    expected = torch.nn.functional.cross_entropy(hidden @ weight.T + bias, targets, reduction="sum") / 50
    expected_grads = torch.autograd.grad(expected * 3, (hidden, weight, bias))
    for chunk in (1, 7, 50, 64):
        got = linear_cross_entropy(hidden, weight, targets, 50, chunk_rows=chunk, bias=bias)
        grads = torch.autograd.grad(got * 3, (hidden, weight, bias))  # the upstream gradient is applied
        assert torch.isclose(got, expected, rtol=1e-5)
        for a, b in zip(grads, expected_grads):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_no_trained_token_gives_a_zero_loss_that_backpropagates():
    model = with_lora(tiny_llama())
    model.train()
    batch = padded_batch()
    batch["labels"][:] = -100
    loss, grads = label_only(model, batch)
    assert loss.item() == 0.0 and all(torch.count_nonzero(g) == 0 for g in grads.values())


def test_outside_the_block_it_is_the_standard_loss_on_real_logits():
    model = with_lora(tiny_llama())
    model.eval()
    batch = padded_batch()
    loss_fn = LabelOnlyLoss(model)
    with torch.no_grad():
        outputs = model(**{k: v for k, v in batch.items() if k != "labels"})
        expected = model(**batch).loss
        assert outputs.logits.shape[-1] == VOCAB
        assert torch.isclose(loss_fn(outputs, batch["labels"]), expected, rtol=1e-6)
    head = model.get_base_model().lm_head
    assert "forward" not in vars(head)  # the head is restored after every block


def test_head_is_restored_when_the_forward_fails():
    model = with_lora(tiny_llama())
    loss_fn = LabelOnlyLoss(model)
    with pytest.raises(RuntimeError):
        with loss_fn.hidden_states_forward():
            raise RuntimeError("boom")
    assert "forward" not in vars(model.get_base_model().lm_head)


def test_unsupported_models_keep_their_own_loss():
    assert label_only_unsupported(with_lora(tiny_llama())) is None
    from peft import LoraConfig, get_peft_model

    # peft's all-linear never adapts lm_head; naming it does.
    lora_on_head = get_peft_model(tiny_llama(tie=False), LoraConfig(r=4, target_modules=["q_proj", "lm_head"],
                                                                    task_type="CAUSAL_LM"))
    assert "not a plain Linear" in label_only_unsupported(lora_on_head)
    saved_head = with_lora(tiny_llama(tie=False), modules_to_save=["lm_head"])
    assert "not a plain Linear" in label_only_unsupported(saved_head)
    capped = tiny_llama()
    capped.config.model_type = "gemma2"
    assert "gemma2" in label_only_unsupported(capped)
    scaled = tiny_llama()
    scaled.config.logit_scale = 0.5
    assert "logit_scale" in label_only_unsupported(scaled)
    loss_fn = LabelOnlyLoss(lora_on_head)
    with loss_fn.hidden_states_forward() as active:
        assert not active
