"""The one mapping between config keys and TrainingArguments fields: what a config builds reads back
to the same keys, and every field it names still exists in the installed transformers."""

import dataclasses

import pytest

from tunesmith.config import load_config
from tunesmith.config.aliases import ALIASES
from tunesmith.config.training_arguments import IGNORED, TRAINING_ARGUMENTS, build_mapped, read_mapped
from tunesmith.errors import ConfigError
from tunesmith.training.arguments import build_training_args

SHARED = ["train.lr=3e-4", "train.epochs=2", "train.max_steps=-1", "train.batch_size=3", "train.grad_accum=2",
          "train.scheduler=linear", "train.weight_decay=0.01", "train.max_grad_norm=0.5", "train.seed=7",
          "train.logging_steps=3", "train.save_limit=2", "train.save_only_model=true", "train.bf16_full_eval=true",
          "train.save_steps=6", "train.eval_steps=6", "model.device=cpu", "train.precision=bf16"]


def value(cfg, key):
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize("warmup", [["train.warmup_steps=4", "train.warmup_ratio=0.0"],
                                    ["train.warmup_steps=0", "train.warmup_ratio=0.1"]])
def test_config_to_training_arguments_and_back_gives_the_same_keys(tmp_path, warmup):
    cfg = load_config(overrides=[*SHARED, *warmup])
    args = build_training_args(cfg, tmp_path, "cpu", "bf16", has_eval=True)
    back = read_mapped(args.to_dict())
    expected = {key: value(cfg, key) for row in TRAINING_ARGUMENTS if row.round_trip for key in row.keys}
    assert len(expected) == 19  # every key the mapping builds from
    assert {key: back.get(key) for key in expected} == expected


def test_the_default_config_reads_back_too(tmp_path):
    cfg = load_config(overrides=["model.device=cpu", "train.precision=bf16", "train.save_steps=0"])
    back = read_mapped(build_training_args(cfg, tmp_path, "cpu", "bf16", has_eval=False).to_dict())
    assert back["train.save_limit"] == 0 and back["train.save_steps"] == 0 and back["train.eval_steps"] == 0
    assert (back["train.warmup_ratio"], back["train.warmup_steps"]) == (cfg.train.warmup_ratio, 0)


@pytest.mark.parametrize("row", [r for r in TRAINING_ARGUMENTS if r.build is not None and len(r.keys) == 1],
                         ids=lambda r: r.field)
def test_each_built_field_reads_back_alone(row):
    samples = {"model.device": "cpu", "train.precision": "fp16" if row.field == "fp16" else "bf16"}
    cfg = load_config(overrides=["train.save_limit=3"])
    mine = samples.get(row.keys[0], value(cfg, row.keys[0]))
    built = build_mapped(cfg, samples)[row.field]
    assert row.read(built, {}) == {row.keys[0]: mine}


def test_every_mapped_field_exists_in_the_installed_transformers():
    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    named = {row.field for row in TRAINING_ARGUMENTS} | {f for row in TRAINING_ARGUMENTS for f in row.reads} | IGNORED
    assert named - fields == set()


def test_the_field_names_are_aliases_of_their_keys():
    for row in TRAINING_ARGUMENTS:
        if row.alias:
            assert ALIASES[row.field] == row.keys[0]
    assert ALIASES["learning_rate"] == "train.lr" and "use_cpu" not in ALIASES


def test_torch_compile_means_compiled_layers(tmp_path):
    from transformers import TrainingArguments

    from tunesmith.config.keywords import training_arguments_updates

    assert training_arguments_updates(TrainingArguments(str(tmp_path), torch_compile=True))["train.compile"] == "on"
    assert "train.compile" not in training_arguments_updates(TrainingArguments(str(tmp_path)))
    with pytest.raises(ConfigError, match="torch_compile_mode='max-autotune' has no tunesmith equivalent"):
        training_arguments_updates(TrainingArguments(str(tmp_path), torch_compile_mode="max-autotune"))
    cfg = load_config()
    cfg.update_config({"torch_compile": True})
    assert cfg.train.compile == "on"
    built = build_training_args(cfg, tmp_path, "cpu", "bf16", has_eval=False)
    assert built.torch_compile is False  # the layers are compiled by tunesmith, not the whole model
