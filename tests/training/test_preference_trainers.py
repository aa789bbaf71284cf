"""Preference trainers on a tiny random Llama: answer log-probabilities, the losses, the reference
model, and gradient accumulation equal to one batch."""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.config import load_config
from tunesmith.config.schema import PreferenceConfig
from tunesmith.api.choices.batching import build_collator
from tunesmith.errors import ConfigError
from tunesmith.models.adapters import apply_adapter
from tunesmith.api.choices.training import build_training_args
from tunesmith.training.preference_losses import PairScores, dpo_loss, kto_loss, orpo_loss
from tunesmith.api.choices.task import resolve_reference
from tunesmith.training.reference import Reference
from tunesmith.training.sequence_logps import sequence_logps
from tunesmith.training.trainers import build_trainer

from grad_capture import GradCapture


def pair_rows(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        prompt = torch.randint(5, 200, (3 + i % 4,), generator=g).tolist()
        chosen = torch.randint(5, 200, (2 + (i * 3) % 7,), generator=g).tolist()
        rejected = torch.randint(5, 200, (1 + (i * 5) % 6,), generator=g).tolist()
        rows.append({"chosen_input_ids": prompt + chosen, "chosen_labels": [-100] * len(prompt) + chosen,
                     "rejected_input_ids": prompt + rejected, "rejected_labels": [-100] * len(prompt) + rejected})
    return rows


def Pairs(inner):
    """Chosen answers first, then rejected, in one batch (the data layer's pair collator)."""
    from tunesmith.data.preference_collators import preference_collator

    return preference_collator("preference", inner)


@pytest.fixture(scope="module")
def lora_model(tiny_llama_dir):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model = apply_adapter(model, load_config(overrides=["peft.r=4"]).peft, "causal_lm")
    with torch.no_grad():  # a non-zero adapter, so the trained model differs from the reference
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    return model


def manual_logps(model, ids, labels):
    logits = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return sum(float(logits[t - 1, labels[t]]) for t in range(1, len(ids)) if labels[t] != -100)


@pytest.mark.parametrize("packing", ["none", "padding_free"])
def test_sequence_logps_match_the_full_logits(lora_model, smol_tokenizer, packing):
    rows = pair_rows(4)
    collator = Pairs(build_collator("auto", "causal_lm", smol_tokenizer, packing))
    batch = collator(rows)
    logps, counts = sequence_logps(lora_model, batch)
    sides = [(r["chosen_input_ids"], r["chosen_labels"]) for r in rows] + \
            [(r["rejected_input_ids"], r["rejected_labels"]) for r in rows]
    expected = [manual_logps(lora_model, ids, lab) for ids, lab in sides]
    torch.testing.assert_close(logps.detach(), torch.tensor(expected), rtol=1e-4, atol=1e-4)
    assert counts.tolist() == [sum(x != -100 for x in lab[1:]) for _, lab in sides]
    full, _ = sequence_logps(lora_model, batch, label_only=False)
    torch.testing.assert_close(logps.detach(), full.detach(), rtol=1e-4, atol=1e-4)


def test_label_only_log_probs_have_the_gradients_of_full_logits(lora_model, smol_tokenizer):
    batch = Pairs(build_collator("auto", "causal_lm", smol_tokenizer, "padding_free"))(pair_rows(3))
    grads = []
    for label_only in (True, False):
        model = copy.deepcopy(lora_model)
        sequence_logps(model, batch, chunk_rows=5, label_only=label_only)[0].sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-3, atol=1e-5)


def scores(c, r, cr=None, rr=None, nc=(2, 2), nr=(2, 2)):
    t = lambda v: None if v is None else torch.tensor(v, dtype=torch.float32)  # noqa: E731
    return PairScores(t(c), t(r), torch.tensor(nc), torch.tensor(nr), t(cr), t(rr))


def test_dpo_losses_by_hand():
    same = scores([-2.0, -3.0], [-4.0, -1.0], [-2.0, -3.0], [-4.0, -1.0])
    torch.testing.assert_close(dpo_loss(same, 0.1), torch.full((2,), float(torch.log(torch.tensor(2.0)))))
    s = scores([-1.0], [-5.0], [-2.0], [-4.0], nc=(1,), nr=(1,))  # margin (1) - (-1) = 2
    torch.testing.assert_close(dpo_loss(s, 0.5), -torch.nn.functional.logsigmoid(torch.tensor([1.0])))
    torch.testing.assert_close(dpo_loss(s, 0.5, "ipo"), torch.tensor([(2.0 - 1.0) ** 2]))
    torch.testing.assert_close(dpo_loss(s, 2.0, "simpo", simpo_gamma=1.0),
                               -torch.nn.functional.logsigmoid(torch.tensor([2.0 * 4.0 - 1.0])))
    loss, ratio = orpo_loss(scores([-0.5], [-2.0], nc=(1,), nr=(1,)), weight=0.1)
    odds = lambda lp: lp - torch.log1p(-torch.exp(torch.tensor(lp)))  # noqa: E731
    expected_ratio = -torch.nn.functional.logsigmoid(odds(-0.5) - odds(-2.0))
    torch.testing.assert_close(ratio, expected_ratio.reshape(1))
    torch.testing.assert_close(loss, 0.5 + 0.1 * expected_ratio.reshape(1))


def test_kto_reference_point_and_weights():
    logps, ref = torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -2.0])  # ratios +1, -1: mean 0
    loss, z = kto_loss(logps, ref, torch.tensor([True, False]), beta=1.0, desirable_weight=2.0, undesirable_weight=1.0)
    assert float(z) == 0.0
    torch.testing.assert_close(loss, torch.tensor([2.0 * (1 - torch.sigmoid(torch.tensor(1.0))),
                                                   1 - torch.sigmoid(torch.tensor(1.0))]))


def test_reference_copy_is_the_starting_model_and_adapter_off_the_base(lora_model, smol_tokenizer):
    model = copy.deepcopy(lora_model)
    batch = Pairs(build_collator("auto", "causal_lm", smol_tokenizer, "none"))(pair_rows(2))
    start = sequence_logps(model, batch)[0].detach()
    copy_ref, off_ref = Reference(model, "copy"), Reference(model, "adapter_off")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.add_(0.1)
    moved = sequence_logps(model, batch)[0].detach()
    assert not torch.allclose(moved, start)
    with copy_ref.active(model) as ref:
        torch.testing.assert_close(sequence_logps(ref, batch)[0], start)
    torch.testing.assert_close(sequence_logps(model, batch)[0].detach(), moved)  # weights put back
    with off_ref.active(model) as ref:
        base = sequence_logps(ref, batch)[0]
    assert not torch.allclose(base, start)  # the adapter was non-zero at the start


def test_reference_choice():
    assert resolve_reference("auto", "lora", continues_adapter=False) == "adapter_off"
    assert resolve_reference("auto", "dora", continues_adapter=True) == "copy"
    assert resolve_reference("precomputed", "full", continues_adapter=False) == "precomputed"
    with pytest.raises(ConfigError, match="full fine-tuning has no adapter to switch off"):
        resolve_reference("auto", "full", continues_adapter=False)
    with pytest.raises(ConfigError, match="adapter_off needs an adapter"):
        resolve_reference("adapter_off", "full", continues_adapter=False)



def one_step(model, rows, tokenizer, tmp_path, trainer, batch_size, grad_accum, reference, **settings):
    from datasets import Dataset

    cfg = load_config(overrides=[f"train.batch_size={batch_size}", f"train.grad_accum={grad_accum}",
                                 "train.max_steps=1", "train.max_grad_norm=0", "train.warmup_ratio=0",
                                 "train.precision=fp32", "train.logging_steps=1"])
    args = build_training_args(cfg, tmp_path / f"{trainer}-{batch_size}x{grad_accum}-{reference}", "cpu", "fp32",
                               False)
    capture = GradCapture()
    built = build_trainer(trainer, {}, "causal_lm", model=copy.deepcopy(model), args=args,
                          train_dataset=Dataset.from_list(rows), eval_dataset=None,
                          data_collator=Pairs(build_collator("auto", "causal_lm", tokenizer, "padding_free")),
                          callbacks=[capture], processing_class=tokenizer,
                          preference=PreferenceConfig(**settings), reference=reference)
    built.train()
    return capture.grads, built


@pytest.mark.parametrize("trainer,reference,settings", [
    ("dpo", "adapter_off", {}), ("dpo", "copy", {"loss": "ipo"}), ("dpo", "precomputed", {"sft_weight": 0.5}),
    ("dpo", None, {"loss": "simpo"}), ("orpo", None, {})])
def test_accumulated_gradients_equal_one_batch(lora_model, smol_tokenizer, tmp_path, trainer, reference, settings):
    rows = pair_rows(8)
    whole, built = one_step(lora_model, rows, smol_tokenizer, tmp_path, trainer, 8, 1, reference, **settings)
    accumulated, _ = one_step(lora_model, rows, smol_tokenizer, tmp_path, trainer, 2, 4, reference, **settings)
    assert whole and whole.keys() == accumulated.keys()
    assert any(float(g.abs().sum()) > 0 for g in whole.values())
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], rtol=1e-4, atol=1e-7, msg=name)
    logged = [h for h in built.state.log_history if "loss" in h]
    assert logged and {"rewards/accuracy", "rewards/margin", "rewards/chosen"} <= set(logged[0])


def test_precomputed_reference_equals_the_adapter_off_reference(lora_model, smol_tokenizer, tmp_path):
    from datasets import Dataset  # noqa: F401

    rows = pair_rows(8)
    model = copy.deepcopy(lora_model)
    with torch.no_grad():  # a new adapter: the reference is then the base either way
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.zero_()
    off, _ = one_step(model, rows, smol_tokenizer, tmp_path, "dpo", 8, 1, "adapter_off")
    pre, _ = one_step(model, rows, smol_tokenizer, tmp_path, "dpo", 8, 1, "precomputed")
    for name in off:
        torch.testing.assert_close(pre[name], off[name], rtol=1e-4, atol=1e-7, msg=name)
