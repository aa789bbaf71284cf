"""Methods × tiny models: which parameters train, target-module presets, and errors."""

import pytest
import torch
from transformers import (BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM, T5Config,
                          T5ForConditionalGeneration)

from tunesmith.config import load_config
from tunesmith.errors import ConfigError
from tunesmith.models.adapters import apply_adapter, count_parameters, resolve_target_modules


def tiny_llama():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))


def tiny_bert():
    return BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=64, num_labels=3))


def tiny_t5():
    return T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                               num_heads=4, decoder_start_token_id=0))


def peft_cfg(*overrides):
    return load_config(overrides=list(overrides)).peft


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("build, task", [(tiny_llama, "causal_lm"), (tiny_bert, "sequence_classification"),
                                         (tiny_t5, "seq2seq")])
@pytest.mark.parametrize("method", ["lora", "dora"])
def test_adapters_train_only_adapters_and_heads(build, task, method):
    model = apply_adapter(build(), peft_cfg(f"peft.method={method}", "peft.r=4"), task)
    names = trainable_names(model)
    assert names and all("lora_" in n or "classifier" in n for n in names), names
    if task == "sequence_classification":
        assert any("classifier" in n for n in names)  # the new head trains next to the adapter
    if method == "dora":
        assert any("lora_magnitude" in n for n in names)
    batch = {"input_ids": torch.randint(0, 64, (2, 5)), "labels": torch.randint(0, 64, (2, 5))}
    if task == "sequence_classification":
        batch["labels"] = torch.tensor([0, 2])
    model(**batch).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and "lora_B" not in n)


def test_presets_resolve_per_architecture():
    assert resolve_target_modules(["all-linear"], "llama") == "all-linear"
    assert resolve_target_modules(["attention"], "t5") == ["q", "k", "v", "o"]
    assert resolve_target_modules(["attention", "gate_proj"], "llama") == ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                            "gate_proj"]
    with pytest.raises(ConfigError, match="no entry for model type 'gptj'"):
        resolve_target_modules(["attention"], "gptj")


def test_t5_attention_preset_targets_q_and_v_style_names():
    model = apply_adapter(tiny_t5(), peft_cfg("peft.target_modules=[attention]", "peft.r=2"), "seq2seq")
    names = trainable_names(model)
    assert any(".q.lora_A" in n for n in names) and any(".v.lora_A" in n for n in names)
    assert not any(".wi.lora_A" in n for n in names)


def test_lora_options_reach_peft():
    model = apply_adapter(tiny_llama(), peft_cfg("peft.use_rslora=true", "peft.bias=lora_only", "peft.r=4",
                                                 "peft.alpha=8"), "causal_lm")
    config = model.peft_config["default"]
    assert config.use_rslora and config.bias == "lora_only"
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert layer.scaling["default"] == pytest.approx(8 / 4 ** 0.5)


def test_unknown_target_module_is_a_config_error():
    with pytest.raises(ConfigError, match="peft.target_modules"):
        apply_adapter(tiny_llama(), peft_cfg("peft.target_modules=[nope_proj]"), "causal_lm")


def test_full_fine_tuning_scopes():
    every = apply_adapter(tiny_llama(), peft_cfg("peft=full"), "causal_lm")
    trainable, total = count_parameters(every)
    assert trainable == total
    head = apply_adapter(tiny_llama(), peft_cfg("peft=full", "peft.trainable=head"), "causal_lm")
    assert trainable_names(head) == {"model.embed_tokens.weight"}  # tied to lm_head: one tensor
    last = apply_adapter(tiny_llama(), peft_cfg("peft=full", "peft.trainable=last_layers", "peft.last_layers=1"),
                         "causal_lm")
    names = trainable_names(last)
    assert any(n.startswith("model.layers.2.") for n in names)
    assert not any(n.startswith(("model.layers.0.", "model.layers.1.")) for n in names)
    bert = apply_adapter(tiny_bert(), peft_cfg("peft=full", "peft.trainable=head"), "sequence_classification")
    assert trainable_names(bert) == {"classifier.weight", "classifier.bias"}
