"""model.hub_kernels: transformers' hub kernels only where they can be had, so offline GPU runs
train; the rule, the messages, and the library internals it reads."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tunesmith.errors import ConfigError
from tunesmith.models import hub_kernels
from tunesmith.models.hub_kernels import HubKernel, apply_hub_kernels, decide_hub_kernels, needed_kernels

ROTARY = HubKernel("rotary_pos_emb", "kernels-community/rotary", 2)


@pytest.fixture(scope="module")
def llama():
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=97)
    return LlamaForCausalLM(config)


@pytest.fixture
def rotary_needed(monkeypatch):
    monkeypatch.setattr(hub_kernels, "kernels_package_available", lambda: True)
    monkeypatch.setattr(hub_kernels, "needed_kernels", lambda model, device: [ROTARY])


def test_the_libraries_still_say_which_kernels_a_model_needs(llama):
    """Reads transformers' kernel mapping and the kernels package's cache layout: fails when they change."""
    if not hub_kernels.kernels_package_available():
        pytest.skip("the kernels package is not installed")
    on_cuda = {k.repo_id: k for k in needed_kernels(llama, "cuda")}
    assert "kernels-community/rotary" in on_cuda and on_cuda["kernels-community/rotary"].version is not None
    assert needed_kernels(llama, "cpu") == []  # no CPU entries: nothing to fetch on a CPU
    from kernels._internals._versions import _cached_refs_dir  # noqa: F401  (kernel_cached reads it)

    assert hub_kernels.kernel_cached(HubKernel("x", "nobody/no-such-kernel", 1)) is False


def test_offline_means_unreachable_without_touching_the_network(monkeypatch):
    monkeypatch.setattr(hub_kernels, "hub_offline", lambda: True)

    def no_network(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(hub_kernels.urllib.request, "urlopen", no_network)
    assert hub_kernels.hub_reachable() is False


def test_auto_turns_them_off_with_one_line_when_a_kernel_cannot_be_had(llama, rotary_needed, monkeypatch):
    monkeypatch.setattr(hub_kernels, "kernel_cached", lambda kernel: False)
    monkeypatch.setattr(hub_kernels, "hub_reachable", lambda: False)
    use, note = decide_hub_kernels("auto", llama, "cuda")
    assert use is False
    assert "kernels-community/rotary (version 2)" in note and "model.hub_kernels=auto" in note


def test_auto_uses_them_when_cached_or_reachable(llama, rotary_needed, monkeypatch):
    monkeypatch.setattr(hub_kernels, "hub_reachable", lambda: False)
    monkeypatch.setattr(hub_kernels, "kernel_cached", lambda kernel: True)
    assert decide_hub_kernels("auto", llama, "cuda") == (True, None)
    monkeypatch.setattr(hub_kernels, "kernel_cached", lambda kernel: False)
    monkeypatch.setattr(hub_kernels, "hub_reachable", lambda: True)
    assert decide_hub_kernels("auto", llama, "cuda") == (True, None)


def test_on_fails_before_training_with_the_kernel_and_how_to_fetch_it(llama, rotary_needed, monkeypatch):
    monkeypatch.setattr(hub_kernels, "kernel_cached", lambda kernel: False)
    monkeypatch.setattr(hub_kernels, "hub_reachable", lambda: False)
    with pytest.raises(ConfigError) as err:
        decide_hub_kernels("on", llama, "cuda")
    message = str(err.value)
    assert message.startswith("model.hub_kernels=on: kernels-community/rotary (version 2)")
    assert "get_kernel('kernels-community/rotary', version=2)" in message


def test_on_without_the_package_says_how_to_install_it(llama, monkeypatch):
    monkeypatch.setattr(hub_kernels, "kernels_package_available", lambda: False)
    with pytest.raises(ConfigError, match="pip install kernels"):
        decide_hub_kernels("on", llama, "cuda")
    assert decide_hub_kernels("auto", llama, "cuda") == (False, None)


def test_off_never_asks(llama, monkeypatch):
    monkeypatch.setattr(hub_kernels, "needed_kernels", lambda *a: pytest.fail("off must not look"))
    assert decide_hub_kernels("off", llama, "cuda") == (False, None)


def test_apply_switches_a_kernelized_model_off(llama, rotary_needed, monkeypatch):
    monkeypatch.setattr(hub_kernels, "kernel_cached", lambda kernel: False)
    monkeypatch.setattr(hub_kernels, "hub_reachable", lambda: False)
    calls = []
    monkeypatch.setattr(type(llama), "use_kernels", property(lambda self: True, lambda self, v: calls.append(v)))
    note = apply_hub_kernels(llama, "auto", "cuda")
    assert calls == [False] and "Hub kernels off" in note


def test_load_model_never_fetches_while_loading(tiny_llama_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    from tunesmith.models.loading import load_model

    seen = {}
    original = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    model = load_model(str(tiny_llama_dir), "causal_lm", torch.float32, "cpu", hub_kernels="auto")
    assert seen["use_kernels"] is False and not model.use_kernels
