"""model.adapter: a run continues the adapter of an earlier run, and refuses one it cannot continue."""

import json

import pytest
import torch

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.errors import ConfigError


def config(model_dir, data_file, out_dir, *extra):
    return load_config(overrides=[
        f"model.name_or_path={model_dir}", f"data.train={data_file}", "data.format=alpaca",
        f"output_dir={out_dir}", "train.max_steps=3", "train.batch_size=4", "train.lr=1e-2",
        "train.precision=fp32", "eval.before_after=off", *extra])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_llama_dir):
    tmp = tmp_path_factory.mktemp("start")
    data = tmp / "d.jsonl"
    data.write_text("\n".join(json.dumps({"instruction": f"Add {a} and 2.", "output": f"#### {a + 2}"})
                              for a in range(12)))
    result = FineTuner(config(tiny_llama_dir, data, tmp / "sft", "peft.r=4")).train()
    return result.run_dir, data, tmp


def _lora(model):
    return {n.replace(".default", ""): p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_a_second_run_starts_from_the_saved_adapter_and_trains_it(first_run, tiny_llama_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    sft, data, tmp = first_run
    saved = _lora(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), str(sft)))
    tuner = FineTuner(config(tiny_llama_dir, data, tmp / "more", f"model.adapter={sft}"))
    from tunesmith.api.train_job import TrainingRun, _load_model

    from tunesmith.models.loading import load_tokenizer

    run = TrainingRun(tuner.config)
    run.tokenizer, run.task, run.device, run.precision = load_tokenizer(str(tiny_llama_dir)), "causal_lm", "cpu", "fp32"
    _load_model(run, [])
    loaded = _lora(run.model)
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert all(p.requires_grad for n, p in run.model.named_parameters() if "lora_" in n)
    result = tuner.train()
    after = _lora(tuner.model)
    assert any(not torch.equal(after[k], saved[k]) for k in saved)  # it trained on from there
    assert json.loads((result.run_dir / "adapter_config.json").read_text())["r"] == 4


def test_a_different_rank_is_refused_not_ignored(first_run, tiny_llama_dir):
    sft, data, tmp = first_run
    with pytest.raises(ConfigError, match=r"model.adapter: .* has r=4, but peft.r=8"):
        FineTuner(config(tiny_llama_dir, data, tmp / "x", f"model.adapter={sft}", "peft.r=8"))


def test_full_fine_tuning_cannot_continue_an_adapter(first_run, tiny_llama_dir):
    sft, data, tmp = first_run
    with pytest.raises(ConfigError, match="peft.method=full trains the weights themselves"):
        FineTuner(config(tiny_llama_dir, data, tmp / "x", f"model.adapter={sft}", "peft.method=full"))


def test_an_adapter_of_another_base_model_is_refused(first_run, tiny_llama_dir, tmp_path):
    sft, data, _ = first_run
    with pytest.raises(ConfigError, match="was trained on model"):
        FineTuner(config("smollm2-135m-instruct", data, tmp_path / "x", f"model.adapter={sft}"))


def test_a_folder_without_an_adapter_is_refused(first_run, tiny_llama_dir, tmp_path):
    _, data, _ = first_run
    with pytest.raises(ConfigError, match="without adapter_config.json"):
        FineTuner(config(tiny_llama_dir, data, tmp_path / "x", f"model.adapter={tmp_path}"))


def test_a_different_dropout_is_refused_not_ignored(first_run, tiny_llama_dir):
    sft, data, tmp = first_run
    with pytest.raises(ConfigError, match=r"has lora_dropout=0.0, but peft.dropout=0.1"):
        FineTuner(config(tiny_llama_dir, data, tmp / "x", f"model.adapter={sft}", "peft.dropout=0.1"))
