"""The speed keys of ``train``: checked early, and ``train.logits`` reaches the sft trainer, whose
label-only loss gives the same gradients as the model's own loss through the whole Trainer."""

import copy
import os
import sys

import pytest
import torch

from tunesmith.config import load_config
from tunesmith.api.choices.batching import build_collator
from tunesmith.errors import ConfigError
from tunesmith.training import losses
from tunesmith.api.choices.training import attention_kwargs, build_training_args
from tunesmith.training.speed import apply_speed_settings
from tunesmith.training.trainers import build_trainer

from grad_capture import GradCapture


def test_bad_values_fail_before_loading():
    with pytest.raises(ConfigError, match="train.logits: 'al' is not allowed.*label_only, full"):
        load_config(overrides=["train.logits=al"])
    with pytest.raises(ConfigError, match="train.logits_chunk: 0 is not allowed"):
        load_config(overrides=["train.logits_chunk=0"])
    with pytest.raises(ConfigError, match="train.attention: 'flash' is not allowed"):
        load_config(overrides=["train.attention=flash"])
    with pytest.raises(ConfigError, match="flash_attention_2.*CUDA"):
        attention_kwargs("flash_attention_2", "cpu")
    assert attention_kwargs("auto", "cpu") == {}
    assert attention_kwargs("eager", "cpu") == {"attn_implementation": "eager"}



@pytest.fixture(scope="module")
def lora_model_and_data(tiny_llama_dir, smol_tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                           LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False))
    rows = []
    for i in range(8):  # variable lengths and prompts, so padding and masking both matter
        ids = smol_tokenizer(f"Question {i}: " + "add the numbers " * (i % 4 + 1) + f"answer {i * 7}")["input_ids"]
        rows.append({"input_ids": ids, "labels": [-100] * (3 + i % 3) + ids[3 + i % 3:]})
    return model, rows


def one_step(model, rows, tokenizer, tmp_path, *overrides):
    cfg = load_config(overrides=["train.batch_size=4", "train.grad_accum=2", "train.max_steps=1",
                                 "train.max_grad_norm=0", "train.precision=fp32", *overrides])
    args = build_training_args(cfg, tmp_path / "run", "cpu", "fp32", False)
    capture = GradCapture()
    trainer = build_trainer("sft", {}, "causal_lm", model=copy.deepcopy(model), args=args, train_dataset=rows,
                            eval_dataset=None, data_collator=build_collator("auto", "causal_lm", tokenizer),
                            callbacks=[capture], processing_class=tokenizer)
    notes = apply_speed_settings(trainer, cfg.train)
    trainer.train()
    return capture.grads, trainer, notes


def test_label_only_and_full_logits_give_the_same_gradients(lora_model_and_data, smol_tokenizer, tmp_path,
                                                            monkeypatch):
    model, rows = lora_model_and_data
    calls = []
    chunked = losses.linear_cross_entropy
    monkeypatch.setattr(losses, "linear_cross_entropy", lambda *a, **k: calls.append(a[0].shape) or chunked(*a, **k))
    full, trainer, _ = one_step(model, rows, smol_tokenizer, tmp_path / "full", "train.logits=full")
    assert not calls and not trainer.compute_loss_func.enabled
    label_only, trainer, notes = one_step(model, rows, smol_tokenizer, tmp_path / "label", "train.logits_chunk=5")
    assert len(calls) == 2 and not notes  # one chunked loss per micro-batch (2 accumulated)
    assert trainer.compute_loss_func.chunk_rows == 5
    trained = sum(sum(1 for t in r["labels"][1:] if t != -100) for r in rows)
    assert sum(shape[0] for shape in calls) == trained  # only trained positions reach the head
    assert full.keys() == label_only.keys() and full
    for name, g in full.items():
        assert torch.allclose(label_only[name], g, rtol=1e-4, atol=1e-6), name


def test_a_model_it_cannot_handle_keeps_its_own_loss_with_a_note(lora_model_and_data, smol_tokenizer, tmp_path):
    model, rows = lora_model_and_data
    other = copy.deepcopy(model)
    other.get_base_model().config.model_type = "my_llama_variant"
    grads, trainer, notes = one_step(other, rows, smol_tokenizer, tmp_path)
    assert len(notes) == 1 and "my_llama_variant" in notes[0]
    with trainer.compute_loss_func.hidden_states_forward() as active:
        assert not active
    assert grads


def test_frozen_linear_weights_in_bf16_change_no_number_under_autocast(lora_model_and_data, smol_tokenizer):
    from tunesmith.api.choices.training import frozen_linear_weights

    model, rows = lora_model_and_data
    model = copy.deepcopy(model).train()
    batch = build_collator("auto", "causal_lm", smol_tokenizer)(rows[:4])
    train = load_config().train

    def loss_and_grads():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    originals = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref_loss, ref_grads = loss_and_grads()
    with frozen_linear_weights(model, train, "bf16", "lora") as cast:
        assert cast == 14  # 7 projections x 2 layers; the head is tied to the embeddings and stays fp32
        assert model.get_base_model().model.layers[0].mlp.up_proj.base_layer.weight.dtype == torch.bfloat16
        assert model.get_base_model().lm_head.weight.dtype == torch.float32
        loss, grads = loss_and_grads()
    assert torch.equal(loss, ref_loss)
    for name, g in ref_grads.items():
        assert torch.equal(grads[name], g), name
    for name, p in model.named_parameters():  # restored: the very same fp32 values
        assert p.dtype == originals[name].dtype and torch.equal(p.detach(), originals[name]), name
    for precision, method, override in (("fp32", "lora", None), ("bf16", "dora", None),
                                        ("bf16", "lora", "as_loaded")):
        t = load_config(overrides=[f"train.frozen_weights={override}"] if override else []).train
        with frozen_linear_weights(model, t, precision, method) as cast:
            assert cast == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_PAGEOUT is Linux's")
def test_page_out_gives_back_file_pages_and_keeps_every_value(tmp_path):
    """The fp32 originals of the cast weights are pages of the model file: paged out, they leave
    resident memory, and reading them again gives the very same numbers."""
    from tunesmith.training.host_memory import page_out

    def resident_mib() -> float:
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    path = tmp_path / "weights.bin"
    torch.manual_seed(0)
    torch.randn(16 * 2**20).numpy().tofile(path)  # 64 MiB of fp32
    mapped = torch.from_file(str(path), shared=False, size=16 * 2**20, dtype=torch.float32)
    expected = float(mapped.double().sum())  # touches every page
    before = resident_mib()
    asked = page_out([mapped])
    after = resident_mib()
    assert asked > 63 * 2**20
    assert before - after > 48, (before, after)
    assert float(mapped.double().sum()) == expected
    assert page_out([]) == 0
