"""Components named in a config: registered names or 'package.module:attr', with checked arguments."""

import json
import textwrap
import uuid

import pytest

from tunesmith import FineTuner
from tunesmith.config import load_config
from tunesmith.errors import ConfigError

USER_CODE = '''
from tunesmith.data.preprocessor import ChatTemplatePreprocessor
from tunesmith.inference.handler import ChatInferenceHandler
from tunesmith.models.loading import load_model

CALLS = []


def sums(split, seed, n, start=0, *, word="plus"):
    """Sums written in words."""
    return [{"instruction": f"{start + i} {word} 1?", "output": str(start + i + 1)} for i in range(n)]


class Capitals:
    """Capital cities as question / answer pairs."""
    format = "qa"
    default_train_size = 6
    default_test_size = 2

    def __init__(self, suffix="?"):
        self.suffix = suffix

    def __call__(self, split, seed, n):
        return [{"question": f"Capital number {i}{self.suffix}", "answer": f"City {i}"} for i in range(n)]


class Upper:
    def __init__(self, marker):
        self.marker = marker

    def __call__(self, tokenizer, examples, task, settings):
        CALLS.append(("preprocess", self.marker, len(examples)))
        return ChatTemplatePreprocessor()(tokenizer, examples, task, settings)


class Tagged(ChatInferenceHandler):
    def __init__(self, tag, system_prompt=None):
        super().__init__(system_prompt)
        self.tag = tag

    def generate(self, model, tokenizer, prompts, settings):
        return [self.tag + text for text in super().generate(model, tokenizer, prompts, settings)]


def eager_loader(name_or_path, task, dtype, device, attn="eager", **kwargs):
    CALLS.append(("load", attn, task))
    return load_model(name_or_path, task, dtype, device, attn_implementation=attn, **kwargs)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A fresh importable module holding the user's components; returns its name."""
    name = f"user_components_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_CODE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def tuner_for(model_dir, *overrides):
    cfg = load_config(overrides=[f"model.name_or_path={model_dir}", "model.device=cpu", "eval.before_after=off",
                                 "train.max_steps=1", "train.batch_size=2", *overrides])
    return FineTuner(cfg)


def test_dataset_function_by_dotted_path_with_arguments(tiny_llama_dir, user_module):
    tuner = tuner_for(tiny_llama_dir, f"data.train={user_module}:sums", "data.dataset_args={start: 40, word: and}")
    bundle = tuner.preprocess_data()
    first = tuner.tokenizer.decode(bundle.train[0]["input_ids"])
    assert "40 and 1?" in first and "41" in first
    assert len(bundle.train) == 2000  # the default size of a builder without its own


def test_dataset_class_by_dotted_path_reads_its_metadata(tiny_llama_dir, user_module):
    tuner = tuner_for(tiny_llama_dir, f"data.train={user_module}:Capitals", "data.dataset_args={suffix: '!'}")
    bundle = tuner.preprocess_data()
    assert len(bundle.train) == 6 and len(bundle.held_out) == 2
    assert bundle.info.describe().startswith("format qa")
    assert "Capital number 0!" in tuner.tokenizer.decode(bundle.train[0]["input_ids"])


@pytest.mark.parametrize("overrides, match", [
    (["data.train={m}:sums", "data.dataset_args={stat: 1}"],
     r"data.dataset_args: 'stat' is not a parameter of sums\(split, seed, n, start=0, \*, word='plus'\). "
     r"Did you mean 'start'\? Allowed: start, word"),
    (["data.train={m}:Capitals", "data.dataset_args={n: 3}"], "data.dataset_args: 'n' is passed by tunesmith"),
    (["data.train={m}:sumz"], r"data.train: '{m}' has no attribute 'sumz'. Did you mean 'sums'\?"),
    (["data.train=no_such_pkg_q.mod:Data"], "data.train: cannot import module 'no_such_pkg_q.mod'"),
    (["data.train=missing.jsonl", "data.dataset_args={start: 1}"], "data.dataset_args: .* only go to handlers"),
    (["data.preprocessor={m}:Upper"], r"data.preprocessor_args: .*Upper.* needs 'marker'"),
    (["data.preprocessor=upper"], r"data.preprocessor: unknown preprocessor 'upper'.*Known: chat_template"),
    (["eval.inference_handler={m}:Tagged", "eval.inference_handler_args={system_prompt: x, tag: y}"],
     "'system_prompt' is passed by tunesmith"),
    (["model.loader={m}:eager_loader", "model.loader_args={device: cuda}"], "'device' is passed by tunesmith"),
    (["data.collator_args={pad_value: 0}"], "data.collator_args: set data.collator to the one"),
    (["data.collator=causal_lm", "data.collator_args={pad_value: 0}"],
     r"data.collator_args: 'pad_value' is not a parameter"),
    (["train.trainer=sft", "train.trainer_args={beta: 1}"], r"train.trainer_args: 'beta' is not a parameter of"),
])
def test_bad_components_fail_before_anything_loads(tiny_llama_dir, user_module, monkeypatch, overrides, match):
    import tunesmith.models.loading as loading

    monkeypatch.setattr(loading, "load_tokenizer", lambda *a, **k: pytest.fail("nothing may load"))
    overrides = [o.replace("{m}", user_module) for o in overrides]
    with pytest.raises(ConfigError, match=match.replace("{m}", user_module)):
        tuner_for(tiny_llama_dir, *overrides)


def test_preprocessor_handler_and_loader_from_the_config(tiny_llama_dir, alpaca_file, user_module):
    import importlib

    module = importlib.import_module(user_module)
    tuner = tuner_for(tiny_llama_dir, f"data.train={alpaca_file}",
                      f"data.preprocessor={user_module}:Upper", "data.preprocessor_args={marker: M}",
                      f"eval.inference_handler={user_module}:Tagged", "eval.inference_handler_args={tag: '>> '}",
                      "data.system_prompt=Be brief.",
                      f"model.loader={user_module}:eager_loader", "model.loader_args={attn: sdpa}")
    assert tuner.inference_handler.system_prompt == "Be brief." and tuner.preprocessor.marker == "M"
    tuner.preprocess_data()
    answer = tuner.generate("Say hi.", max_length=2)
    assert answer.startswith(">> ")
    assert [c[0] for c in module.CALLS] == ["preprocess", "load"] and module.CALLS[1][1:] == ("sdpa", "causal_lm")


def test_register_decorators_refuse_duplicates():
    from tunesmith.data.preprocessor import register_preprocessor
    from tunesmith.inference.handler import register_inference_handler
    from tunesmith.models.loading import register_model_loader

    for register, taken in ((register_preprocessor, "chat_template"), (register_inference_handler, "chat"),
                            (register_model_loader, "auto")):
        with pytest.raises(ConfigError, match="already registered"):
            register(taken)(object)


def test_saved_config_round_trips_component_arguments(tmp_path, user_module):
    from tunesmith.config import read_saved_config, save_config

    cfg = load_config(overrides=[f"data.train={user_module}:sums", "data.dataset_args={start: 3}",
                                 "train.trainer_args={}", "data.collator=causal_lm"])
    save_config(cfg, tmp_path / "config.yaml")
    assert read_saved_config(tmp_path / "config.yaml") == cfg
    assert json.loads(json.dumps(cfg.data.dataset_args)) == {"start": 3}
