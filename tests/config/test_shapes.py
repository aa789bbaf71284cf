"""Component-style YAML (model_args, template_args, trainer name+args, dataset args) and ${...}
interpolation become tunesmith keys; settings without a tunesmith meaning are errors naming the key."""

import logging

import pytest

from tunesmith.config import load_config
from tunesmith.config.schema import DataConfig, PromptTags
from tunesmith.config.shapes import template_args_for, template_keys, translate_shapes, trainer_name
from tunesmith.errors import ConfigError


def test_model_and_tokenizer_args():
    rest, keys = translate_shapes({"model_args": {"pretrained_model_name_or_path": "m", "dtype": "torch.float16",
                                                  "trust_remote_code": True},
                                   "tokenizer_args": {"pretrained_model_name_or_path": "m"}, "peft": "lora"}, "f")
    assert rest == {"peft": "lora"}
    assert keys == {"model.name_or_path": "m", "model.dtype": "float16", "model.trust_remote_code": True}
    with pytest.raises(ConfigError, match="tokenizer_args.pretrained_model_name_or_path='t' .* differs"):
        translate_shapes({"model_args": {"pretrained_model_name_or_path": "m"},
                          "tokenizer_args": {"pretrained_model_name_or_path": "t"}}, "f")
    with pytest.raises(ConfigError, match="tokenizer_args.padding_side .*no tunesmith equivalent"):
        translate_shapes({"tokenizer_args": {"padding_side": "left"}}, "f")


def test_template_args_both_ways():
    assert template_keys({"apply_chat_template": True}, "f") == {"data.template": "auto"}
    keys = template_keys({"apply_chat_template": False, "user_start_tag": "U:", "asst_tag": "A:"}, "f")
    assert keys == {"data.template": "tags", "data.tags.user_start": "U:", "data.tags.assistant_start": "A:"}
    with pytest.raises(ConfigError, match="apply only with apply_chat_template: false"):
        template_keys({"apply_chat_template": True, "asst_tag": "A:"}, "f")
    tags = DataConfig(template="tags", tags=PromptTags(user_start="U:", assistant_start="A:"))
    back = template_keys(template_args_for(tags), "f")
    assert back["data.tags.user_start"] == "U:" and back["data.tags.assistant_start"] == "A:"
    assert template_args_for(DataConfig()) == {"apply_chat_template": True}


@pytest.mark.parametrize("data, expected", [
    ({"TOFU": {"args": {"max_length": 64}}}, {"data.train": "TOFU", "data.dataset_args": {"max_length": 64}}),
    ({"TOFU": {"handler": "QADataset", "args": {"hf_args": {"path": "p"}}}},
     {"data.train": "QADataset", "data.dataset_args": {"hf_args": {"path": "p"}}}),
    ({"forget": {"facts-forget": {"handler": "facts-forget"}}, "retain": {"r": {"handler": "facts-retain"}}},
     {"data.train": "facts-forget", "data.retain": "facts-retain"}),
])
def test_dataset_entries(data, expected):
    rest, keys = translate_shapes({"data": {**data, "max_samples": 5}}, "f")
    assert keys == expected and rest == {"data": {"max_samples": 5}}


def test_data_keys_that_hold_mappings_stay_keys():
    data = {"dataset_args": {"args": 1}, "columns": {"handler": "h"}}
    assert translate_shapes({"data": data}, "f") == ({"data": data}, {})


def test_trainer_names_are_ours_everywhere():
    assert [trainer_name(n) for n in ("finetune", "GradAscent", "GradDiff", "NPO", "sft")] == [
        "auto", "grad_ascent", "grad_diff", "npo", "sft"]
    cfg = load_config()
    cfg.update_config({"train.trainer": "GradDiff"})
    assert cfg.train.trainer == "grad_diff"


def test_interpolation_in_a_user_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNS_ROOT", str(tmp_path / "runs"))
    path = tmp_path / "job.yaml"
    path.write_text("paths:\n  data: rows.jsonl\ndata:\n  train: ${paths.data}\noutput_dir: ${oc.env:RUNS_ROOT}/a\n"
                    "train:\n  seed: 7\n  logging_steps: ${train.seed}\n")
    (tmp_path / "rows.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    cfg = load_config(path)
    assert (cfg.data.train, cfg.output_dir, cfg.train.logging_steps) == ("rows.jsonl", str(tmp_path / "runs/a"), 7)
    path.write_text("paths:\n  data: rows.jsonl\n")
    with pytest.raises(ConfigError, match="paths .*nothing here refers to it"):
        load_config(path)


def test_yaml_trainer_epochs_beat_the_packaged_step_limit(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("trainer:\n  name: finetune\n  args:\n    num_train_epochs: 2\n    learning_rate: 1e-4\n")
    cfg = load_config(path)
    assert (cfg.train.epochs, cfg.train.max_steps, cfg.train.lr) == (2.0, -1, 1e-4)


def test_a_keyword_and_trainer_config_that_disagree_warn(caplog):
    from tunesmith.api import FineTuner

    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        cfg = FineTuner(lora_r=4, trainer_config={"lora_r": 8}).config
    assert cfg.peft.r == 4 and "peft.r" in caplog.text and "the keyword is used" in caplog.text
