"""Training a tiny random Llama end to end through FineTuner: adapters change, the base does not,
and the run directory reloads and generates."""

import json

import pytest
import torch

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.errors import RunDirError
from tunesmith.inference.generate import generate
from tunesmith.inference.runs import load_run
from tunesmith.models.generation import GenerationSettings


def tiny_config(model_dir, data_file, out_dir, *extra):
    return load_config(overrides=[
        f"model.name_or_path={model_dir}", f"data.train={data_file}", "data.format=alpaca",
        f"output_dir={out_dir}", "train.max_steps=4", "train.batch_size=4",
        "train.lr=1e-2", "train.logging_steps=1", "train.precision=fp32", "eval.before_after=off", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama_dir):
    tmp = tmp_path_factory.mktemp("run")
    rows = [{"instruction": f"Add {a} and {b}.", "output": f"#### {a + b}"} for a in range(6) for b in range(4)]
    data = tmp / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    tuner = FineTuner(tiny_config(tiny_llama_dir, data, tmp / "out"))
    result = tuner.train()
    return tuner, result, data


def test_lora_weights_change_and_base_weights_do_not(trained, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    tuner, result, _ = trained
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).state_dict()
    lora_b = {n: p for n, p in tuner.model.named_parameters() if "lora_B" in n}
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b.values())  # lora_B starts at zero
    for name, p in tuner.model.named_parameters():
        if "lora_" in name:
            continue
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert not p.requires_grad
        assert torch.equal(p.detach(), base[key]), name


def test_lora_layers_train_fused_and_get_peft_s_forward_back(trained):
    from tunesmith.training.fused_lora import fusable

    tuner, result, _ = trained
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["speed"]["lora_kernel"] == "fused" and record["plan"]["lora_kernel"] == "fused"
    layers = [m for m in tuner.model.modules() if fusable(m)]
    assert layers and not any("forward" in vars(m) for m in layers)


def test_run_directory_contents(trained):
    _, result, _ = trained
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "config.yaml", "metrics.jsonl",
            "run.json", "tokenizer.json", "loss_curve.png"} <= files
    logs = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "loss" in r] == [1, 2, 3, 4]
    assert result.train_loss is not None


def test_run_reloads_and_generates(trained):
    tuner, result, _ = trained
    run = load_run(result.run_dir)
    prompt = "Add 1 and 2."
    (reloaded,) = generate(run.model, run.tokenizer, [prompt], GenerationSettings(max_new_tokens=8))
    (original,) = generate(tuner.model, tuner.tokenizer, [prompt], GenerationSettings(max_new_tokens=8))
    assert reloaded == original


def test_non_empty_output_dir_is_not_overwritten(trained, tiny_llama_dir):
    _, result, data = trained
    before = (result.run_dir / "adapter_model.safetensors").read_bytes()
    with pytest.raises(RunDirError, match="not empty"):
        FineTuner(tiny_config(tiny_llama_dir, data, result.run_dir)).train()
    assert (result.run_dir / "adapter_model.safetensors").read_bytes() == before


def test_full_fine_tuning_trains_every_weight(tmp_path, tiny_llama_dir, trained):
    _, _, data = trained
    tuner = FineTuner(tiny_config(tiny_llama_dir, data, tmp_path / "full", "peft=full", "train.lr=1e-3"))
    result = tuner.train()
    assert (result.run_dir / "model.safetensors").is_file()
    run = load_run(result.run_dir)
    for (n, a), b in zip(run.model.state_dict().items(), tuner.model.state_dict().values()):
        assert torch.allclose(a, b), n


def test_packed_training_runs(tmp_path, tiny_llama_dir, trained):
    _, _, data = trained
    tuner = FineTuner(tiny_config(tiny_llama_dir, data, tmp_path / "packed", "data.packing=pack",
                                  "data.max_length=64", "data.cache=false"))
    result = tuner.train()
    assert result.train_loss is not None and (result.run_dir / "adapter_model.safetensors").is_file()


def test_classification_with_a_tiny_bert(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from tunesmith.models.loading import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    model_dir = tmp_path / "tiny-bert"
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    cfg = load_config(overrides=[f"model.name_or_path={model_dir}", "model.task=sequence_classification",
                                 "data=sentiment", "data.max_samples=64", f"output_dir={tmp_path / 'out'}",
                                 "train.max_steps=3", "train.batch_size=8", "train.precision=fp32",
                                 "peft.target_modules=[query,value]", "data.cache=false"])
    tuner = FineTuner(cfg)
    result = tuner.train()
    assert tuner.model.config.id2label == {0: "negative", 1: "positive"}
    assert set(result.before) >= {"accuracy", "macro_f1", "mcc", "confusion_matrix"}  # base model, same eval set
    assert result.after["total"] == result.before["total"] == 400
    assert (result.run_dir / "adapter_model.safetensors").is_file()


def test_seq2seq_with_a_tiny_t5(tmp_path, smol_tokenizer):
    from transformers import T5Config, T5ForConditionalGeneration

    model_dir = tmp_path / "tiny-t5"
    config = T5Config(vocab_size=len(smol_tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      decoder_start_token_id=smol_tokenizer.pad_token_id, pad_token_id=smol_tokenizer.pad_token_id,
                      eos_token_id=smol_tokenizer.eos_token_id)
    T5ForConditionalGeneration(config).save_pretrained(model_dir)
    smol_tokenizer.save_pretrained(model_dir)
    rows = [{"source": f"summarise: item {i} is red and round", "target": f"red {i}"} for i in range(16)]
    data = tmp_path / "s2s.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = load_config(overrides=[f"model.name_or_path={model_dir}", f"data.train={data}", f"output_dir={tmp_path / 'o'}",
                                 "train.max_steps=3", "train.batch_size=4", "train.precision=fp32",
                                 "peft.target_modules=[attention]", "data.cache=false"])
    tuner = FineTuner(cfg)
    result = tuner.train()
    assert tuner.model.peft_config["default"].task_type == "SEQ_2_SEQ_LM"
    run = load_run(result.run_dir)
    (text,) = generate(run.model, run.tokenizer, ["summarise: item 3 is red and round"],
                       GenerationSettings(max_new_tokens=4))
    assert isinstance(text, str)


@pytest.mark.parametrize("method", ["qlora", "int8"])
def test_quantized_methods_train_through_finetuner(tmp_path, tiny_llama_dir, trained, method):
    _, _, data = trained
    tuner = FineTuner(tiny_config(tiny_llama_dir, data, tmp_path / method, f"peft={method}", "data.cache=false"))
    result = tuner.train()
    lora_b = [p for n, p in tuner.model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)
    assert (result.run_dir / "adapter_model.safetensors").is_file()
    run = load_run(result.run_dir)
    (text,) = generate(run.model, run.tokenizer, ["Add 1 and 2."], GenerationSettings(max_new_tokens=4))
    assert isinstance(text, str)
