"""Base models without a chat template (GPT-2 style), the positional device, ``max_length`` as the
generation length, ``"gpu"`` as a device and a ``preprocess_data()`` result used like a Dataset."""

import logging

import pytest

from tunesmith.api import FineTuner
from tunesmith.config import load_config

QUICK = {"train.max_steps": 2, "train.batch_size": 4, "train.precision": "fp32", "eval.before_after": "off",
         "data.cache": False, "data.format": "alpaca"}


def test_device_is_the_second_positional_argument():
    assert FineTuner("gpt2", "cpu").config.model.device == "cpu"
    assert FineTuner("gpt2", "cpu", "arith").config.data.train == "arith"  # the documented order


@pytest.mark.parametrize("given, device", [("gpu", "cuda"), ("gpu:1", "cuda:1")])
def test_gpu_means_cuda(given, device):
    assert FineTuner("gpt2", given).config.model.device == device
    assert load_config(overrides=[f"model.device={given}"]).model.device == device


def test_max_length_is_the_training_and_the_generation_length():
    cfg = FineTuner(max_length=300).config
    assert (cfg.data.max_length, cfg.eval.max_new_tokens) == (300, 300)
    cfg = FineTuner(max_length=300, trainer_config={"eval.max_new_tokens": 20}).config
    assert (cfg.data.max_length, cfg.eval.max_new_tokens) == (300, 20)  # the explicit key wins
    assert FineTuner().config.eval.max_new_tokens == 96  # untouched without max_length


def test_a_base_model_continues_plain_text_and_says_so_once(tiny_gpt2_dir, caplog, monkeypatch):
    import tunesmith.data.templates as templates

    monkeypatch.setattr(templates, "_TOLD_PLAIN", set())  # as in a fresh process
    tuner = FineTuner(str(tiny_gpt2_dir), "cpu", max_length=5)
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        first = tuner.generate("Once upon a time")
        second = tuner("Once upon a time")
    assert isinstance(first, str) and first == second  # greedy: the same continuation twice
    told = [r for r in caplog.records if "no chat template" in r.getMessage()]
    assert len(told) == 1 and "plain" in told[0].getMessage()
    ids = tuner.tokenizer(tuner.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Once upon a time"}], tokenize=False, add_generation_prompt=True))
    assert tuner.tokenizer.decode(ids["input_ids"]) == "Once upon a time"  # the prompt is the text itself
    assert len(tuner.tokenizer(first)["input_ids"]) <= 5 + 1  # max_length=5 new tokens (+1: re-tokenizing)


def test_a_base_model_trains_on_conversations_as_plain_text(tiny_gpt2_dir, alpaca_file, tmp_path):
    tuner = FineTuner(str(tiny_gpt2_dir), "cpu", str(alpaca_file), trainer_config=QUICK)
    bundle = tuner.preprocess_data()
    text = tuner.tokenizer.decode(bundle[0]["input_ids"])
    assert text.startswith("Add ") and "\n2 + 3 = 5" in text
    result = tuner.train(tmp_path / "run")
    reloaded = FineTuner.load(result.run_dir, "cpu")
    assert reloaded.tokenizer.chat_template == tuner.tokenizer.chat_template  # prompts as in training
    assert isinstance(reloaded.generate("Add 1 and 2.", max_length=4), str)


def test_preprocess_data_result_works_like_a_dataset(tiny_llama_dir, alpaca_file):
    bundle = FineTuner(str(tiny_llama_dir), "cpu", str(alpaca_file), trainer_config=QUICK).preprocess_data()
    assert len(bundle) == len(bundle.train) == 18
    assert bundle[0]["input_ids"] == bundle.train[0]["input_ids"]
    assert len(bundle["input_ids"]) == 18 and len(bundle[:3]["labels"]) == 3
    assert sum(1 for _ in bundle) == 18
    assert bundle.column_names == ["input_ids", "labels"] and bundle.num_rows == 18
    with pytest.raises(AttributeError):
        bundle.no_such_attribute


def test_answers_stop_at_the_models_context_window(tiny_gpt2_dir):
    from transformers import AutoModelForCausalLM

    from tunesmith.errors import ModelError
    from tunesmith.models.generation import new_token_budget

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)  # 64 positions
    assert new_token_budget(model, 12, 1000) == 52 and new_token_budget(model, 12, 20) == 20
    with pytest.raises(ModelError, match="context window of 64"):
        new_token_budget(model, 64, 10)
