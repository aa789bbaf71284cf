"""load_run: adapter runs, full runs, quantized runs and plain (merged) model folders."""

import json
import shutil
import sys

import pytest
import torch

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.errors import RunDirError
from tunesmith.inference.generate import generate
from tunesmith.inference.runs import load_run
from tunesmith.models.generation import GenerationSettings
from tunesmith.api.exports import merge_run
from tunesmith.models.merge import is_quantized

FAST = ["train.max_steps=3", "train.batch_size=4", "train.lr=1e-2", "train.scheduler=constant",
        "train.warmup_ratio=0", "train.precision=fp32", "eval.before_after=off", "data.cache=false"]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_llama_dir):
    tmp = tmp_path_factory.mktemp("runs")
    rows = [{"instruction": f"Add {a} and {b}.", "output": f"#### {a + b}"} for a in range(6) for b in range(4)]
    data = tmp / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = load_config(overrides=[f"model.name_or_path={tiny_llama_dir}", f"data.train={data}", "data.format=alpaca",
                                 "data.system_prompt=Answer briefly.", f"output_dir={tmp / 'lora'}", *FAST])
    return FineTuner(cfg).train().run_dir


def greedy(run, prompt="Add 1 and 2."):
    (text,) = generate(run.model, run.tokenizer, [prompt], GenerationSettings(max_new_tokens=8))
    return text


def test_merged_folder_loads_as_a_plain_model_with_the_runs_config(lora_run, tmp_path):
    merged = merge_run(lora_run, tmp_path / "merged")
    run, folder = load_run(lora_run, "cpu"), load_run(merged, "cpu")
    assert type(folder.model).__name__ == "LlamaForCausalLM"  # no adapter wrapper: the weights are merged
    assert folder.config.data.system_prompt == "Answer briefly."  # from the run, for generate/chat
    assert folder.config.model.name_or_path == str(merged) and folder.config.model.task == "causal_lm"
    assert folder.tokenizer.chat_template == run.tokenizer.chat_template
    assert greedy(folder) == greedy(run)


def test_any_model_folder_loads(tiny_llama_dir):
    run = load_run(tiny_llama_dir, "cpu")
    assert run.config.model.name_or_path == str(tiny_llama_dir) and run.config.model.task == "causal_lm"
    assert run.config.data.system_prompt is None and not run.model.training


def test_folders_that_are_neither_run_nor_model(lora_run, tmp_path):
    with pytest.raises(RunDirError, match="not a tunesmith run directory"):
        load_run(tmp_path)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(lora_run, unfinished)
    (unfinished / "run.json").unlink()
    with pytest.raises(RunDirError, match="did not finish"):
        load_run(unfinished)


def test_classification_run_gets_its_labels_back(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from tunesmith.models.loading import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    base = tmp_path / "tiny-bert"
    BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64,
                                             max_position_embeddings=128)).save_pretrained(base)
    tok.save_pretrained(base)
    cfg = load_config(overrides=[f"model.name_or_path={base}", "model.task=sequence_classification", "data=sentiment",
                                 "data.max_samples=32", f"output_dir={tmp_path / 'out'}",
                                 "peft.target_modules=[query,value]", *FAST])
    tuner = FineTuner(cfg)
    run_dir = tuner.train().run_dir
    run = load_run(run_dir, "cpu")
    assert run.model.config.id2label == {0: "negative", 1: "positive"}
    batch = run.tokenizer(["great", "awful"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.allclose(run.model(**batch).logits, tuner.model.eval()(**batch).logits, atol=1e-5)


def qlora_copy(run_dir, dest):
    import yaml

    shutil.copytree(run_dir, dest)
    raw = yaml.safe_load((dest / "config.yaml").read_text())
    raw["peft"]["method"] = "qlora"
    raw["peft"]["quantization"]["compute_dtype"] = "float32"
    (dest / "config.yaml").write_text(yaml.safe_dump(raw))
    return dest


def test_quantized_run_loads_its_base_quantized_again(lora_run, tmp_path, monkeypatch):
    quantization = pytest.importorskip("tunesmith.models.quantization")
    pytest.importorskip("bitsandbytes")
    calls = []
    real = quantization.quantization_kwargs

    def spy(peft_cfg, device):
        calls.append((peft_cfg.method, device))
        return real(peft_cfg, device)

    monkeypatch.setattr(quantization, "quantization_kwargs", spy)
    run = load_run(qlora_copy(lora_run, tmp_path / "qlora"), "cpu")
    assert calls == [("qlora", "cpu")]
    assert is_quantized(run.model.get_base_model())
    assert any(type(m).__name__ == "Linear4bit" for m in run.model.modules())


def test_quantized_run_without_the_quantization_module_loads_in_float(lora_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tunesmith.models.quantization", None)  # import now fails
    with pytest.warns(UserWarning, match="loading the base model unquantized"):
        run = load_run(qlora_copy(lora_run, tmp_path / "qlora"), "cpu")
    assert not is_quantized(run.model.get_base_model())


def test_a_built_in_datasets_system_prompt_reaches_inference(lora_run, tmp_path):
    """Training adds arith's own system prompt to every example; generate / chat / serve must too."""
    import yaml

    from tunesmith.data.builtin import BUILTIN_DATASETS

    copy = tmp_path / "arith-run"
    shutil.copytree(lora_run, copy)
    raw = yaml.safe_load((copy / "config.yaml").read_text())
    raw["data"].update(train="arith", format="auto", system_prompt=None)
    (copy / "config.yaml").write_text(yaml.safe_dump(raw))
    expected = BUILTIN_DATASETS.get("arith").system_prompt
    assert expected and load_run(copy, "cpu").config.data.system_prompt == expected
    assert FineTuner.load(copy, "cpu").inference_handler.system_prompt == expected
    assert load_run(lora_run, "cpu").config.data.system_prompt == "Answer briefly."  # a set one is kept
