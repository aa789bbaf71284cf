"""Loading is safe by default: safetensors only (pickle weights need model.allow_pickle) and no
custom model code (it needs model.trust_remote_code)."""

import json
import pickle
from pathlib import Path

import pytest
import torch

from tunesmith.errors import ModelError
from tunesmith.models.loading import load_model, load_model_config, load_tokenizer


class _RunsCodeWhenUnpickled:
    """A pickle payload that touches a marker file when it is loaded, as a malicious one could."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=2))


def pickle_only_folder(folder: Path, model, name: str = "pytorch_model.bin") -> Path:
    folder.mkdir()
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / name)
    return folder


def test_pickle_only_folder_is_refused_with_how_to_opt_in(tmp_path, tiny_llama):
    folder = pickle_only_folder(tmp_path / "m", tiny_llama)
    with pytest.raises(ModelError) as err:
        load_model(str(folder))
    message = str(err.value)
    assert "pytorch_model.bin" in message and "pickle" in message and "run arbitrary code" in message
    assert "model.allow_pickle=true" in message


@pytest.mark.parametrize("name", ["model.pt", "weights.pth", "last.ckpt"])
def test_other_pickle_suffixes_are_named(tmp_path, tiny_llama, name):
    folder = pickle_only_folder(tmp_path / "m", tiny_llama, name)
    with pytest.raises(ModelError, match=f"only pickle weights \\({name}\\).*model.allow_pickle=true"):
        load_model(str(folder))


def test_allow_pickle_loads_the_pickle_weights(tmp_path, tiny_llama):
    folder = pickle_only_folder(tmp_path / "m", tiny_llama)
    model = load_model(str(folder), "causal_lm", torch.float32, allow_pickle=True)
    for name, value in tiny_llama.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_pickle_is_never_opened_without_allow_pickle(tmp_path, tiny_llama):
    marker = tmp_path / "code-ran"
    folder = tmp_path / "m"
    folder.mkdir()
    tiny_llama.config.save_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_RunsCodeWhenUnpickled(marker)))
    with pytest.raises(ModelError, match="pickle"):
        load_model(str(folder))
    assert not marker.exists()
    # Next to safetensors weights the pickle is ignored, not read.
    tiny_llama.save_pretrained(folder)
    model = load_model(str(folder), "causal_lm", torch.float32)
    assert torch.equal(model.lm_head.weight, tiny_llama.lm_head.weight) and not marker.exists()


def test_existing_positional_parameters_still_work(tmp_path, tiny_llama):
    tiny_llama.save_pretrained(tmp_path / "m")
    model = load_model(str(tmp_path / "m"), "causal_lm", torch.bfloat16, "cpu", False, None)
    assert model.dtype == torch.bfloat16


@pytest.fixture
def custom_code_folder(tmp_path) -> tuple[Path, Path]:
    """A model folder whose config asks for its own Python code, which touches a marker if run."""
    folder, marker = tmp_path / "custom", tmp_path / "code-ran"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "tunesmith-test-custom",
        "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                     "AutoModelForCausalLM": "modeling_custom.CustomModel",
                     "AutoTokenizer": ["tokenization_custom.CustomTokenizer", None]}}))
    payload = f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
    for name in ("configuration_custom.py", "modeling_custom.py", "tokenization_custom.py"):
        (folder / name).write_text(payload)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CustomTokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_custom.CustomTokenizer", None]}}))
    return folder, marker


@pytest.mark.parametrize("load", [lambda p: load_model(p), lambda p: load_model_config(p), lambda p: load_tokenizer(p)],
                         ids=["model", "config", "tokenizer"])
def test_custom_code_is_refused_without_trust_remote_code(custom_code_folder, load):
    folder, marker = custom_code_folder
    with pytest.raises(ModelError) as err:
        load(str(folder))
    message = str(err.value)
    assert message.startswith("model.trust_remote_code:") and "model.trust_remote_code=true" in message
    assert not marker.exists()
