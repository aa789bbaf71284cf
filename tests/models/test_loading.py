import os

import pytest

from tunesmith.errors import ModelError
from tunesmith.models import loading
from tunesmith.api.choices.runtime import resolve_precision, resolve_weight_dtype
from tunesmith.api.choices.task import infer_task
from tunesmith.models.loading import load_model_config, resolve_model_path


def test_packaged_alias_resolves_to_cached_safetensors_folder(smol_tokenizer_dir):
    assert (smol_tokenizer_dir / "model.safetensors").is_file()
    assert (smol_tokenizer_dir / "config.json").is_file()
    assert (smol_tokenizer_dir / "chat_template.jinja").is_file() or "chat_template" in (
        smol_tokenizer_dir / "tokenizer_config.json").read_text()


def test_gguf_cache_is_reused_without_converting_again(smol_tokenizer_dir, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the GGUF file was converted a second time")

    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", fail)
    assert resolve_model_path("smollm2-135m-instruct") == str(smol_tokenizer_dir)


def test_cache_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "c"))
    assert loading.cache_root() == tmp_path / "c"
    monkeypatch.delenv("TUNESMITH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert loading.cache_root() == tmp_path / "x" / "tunesmith"


def test_minilm_alias_is_a_local_encoder():
    path = resolve_model_path("minilm-l6")
    assert os.path.isfile(os.path.join(path, "config.json"))
    assert infer_task(load_model_config("minilm-l6")) == "sequence_classification"


def test_local_folder_and_task_inference(tiny_llama_dir):
    assert resolve_model_path(str(tiny_llama_dir)) == str(tiny_llama_dir)
    assert infer_task(load_model_config(str(tiny_llama_dir))) == "causal_lm"
    assert infer_task(load_model_config(str(tiny_llama_dir)), "seq2seq") == "seq2seq"


@pytest.mark.parametrize("bad, message", [("./no/such/folder", "does not exist"), ("missing.gguf", "does not exist")])
def test_bad_local_paths(bad, message):
    with pytest.raises(ModelError, match=message):
        resolve_model_path(bad)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model_path(str(tmp_path))


def test_hub_id_offline_says_how_to_get_it():
    with pytest.raises(ModelError) as err:
        load_model_config("some-org/not-a-cached-model")
    assert "hf download some-org/not-a-cached-model" in str(err.value)


def test_precision_choice(monkeypatch):
    import torch

    monkeypatch.setattr("tunesmith.models.precision.cpu_has_fast_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr("tunesmith.models.precision.cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_weight_dtype("auto", "cpu", "bf16") == torch.float32  # autocast, fp32 weights
    assert resolve_weight_dtype("bfloat16", "cpu", "bf16") == torch.bfloat16
    from tunesmith.errors import ConfigError

    with pytest.raises(ConfigError, match="fp16"):
        resolve_precision("fp16", "cpu")
