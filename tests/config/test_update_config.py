"""TrainConfig.update_config: aliases, dotted keys and section dicts, checked like config files."""

import copy

import pytest

from tunesmith.config import ALIASES, TrainConfig, load_config
from tunesmith.errors import ConfigError


def get(cfg, dotted):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


# One value per alias target that differs from the default and passes check_values.
VALUES = {
    "train.lr": 5e-4, "train.batch_size": 3, "train.epochs": 2.0, "train.max_steps": 7,
    "train.grad_accum": 4, "train.seed": 123, "train.scheduler": "linear", "train.warmup_ratio": 0.2,
    "train.weight_decay": 0.01, "peft.r": 8, "peft.alpha": 64, "peft.dropout": 0.1,
    "peft.target_modules": ["q_proj", "v_proj"], "peft.method": "dora", "model.name_or_path": "./my-model",
    "data.train": "rows.jsonl", "data.max_length": 256, "output_dir": "runs/x", "model.device": "cpu",
    "train.warmup_steps": 5, "train.save_steps": 100, "train.save_limit": 2, "train.save_only_model": True,
    "train.bf16_full_eval": True, "train.logging_dir": "logs/tb", "train.logging_steps": 3,
    "train.compile": "on",
}


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_every_alias_sets_its_one_key(alias):
    target = ALIASES[alias]
    cfg = TrainConfig()
    before = copy.deepcopy(cfg)
    assert cfg.update_config({alias: VALUES[target]}) is cfg  # in place, returns self
    assert get(cfg, target) == VALUES[target]
    section = target.split(".")[0]
    for name in ("model", "data", "peft", "train", "eval"):
        if name != section:
            assert getattr(cfg, name) == getattr(before, name), name  # nothing else moved


def test_aliases_cover_the_documented_names():
    assert ALIASES["learning_rate"] == "train.lr" and ALIASES["model_id"] == "model.name_or_path"
    assert set(ALIASES.values()) == set(VALUES)


def test_dotted_and_nested_forms_convert_like_config_files():
    cfg = TrainConfig()
    cfg.update_config({"peft.r": "8", "train.lr": "5e-4", "train": {"seed": 7, "batch_size": 2.0},
                       "peft": {"quantization": {"quant_type": "fp4"}}, "model.trust_remote_code": "yes",
                       "data.columns": {"prompt": "question"}, "target_modules": "q_proj"})
    assert cfg.peft.r == 8 and cfg.train.lr == pytest.approx(5e-4)
    assert cfg.train.seed == 7 and cfg.train.batch_size == 2
    assert cfg.peft.quantization.quant_type == "fp4" and cfg.peft.quantization.double_quant is True
    assert cfg.model.trust_remote_code is True
    assert cfg.data.columns == {"prompt": "question"}
    assert cfg.peft.target_modules == ["q_proj"]  # a single name is a one-item list, as on the CLI


def test_matches_the_cli_overrides():
    via_python = load_config().update_config({"lr": 1e-4, "peft.r": 4, "model": "some/model"})
    via_cli = load_config(overrides=["train.lr=1e-4", "peft.r=4", "model.name_or_path=some/model"])
    assert via_python == via_cli


def test_section_objects_are_updated_not_replaced():
    cfg = TrainConfig()
    train = cfg.train
    cfg.update_config({"lr": 1e-3})
    assert train is cfg.train and train.lr == 1e-3


@pytest.mark.parametrize("key, expected", [
    ("lerning_rate", "Did you mean 'learning_rate' (train.lr)?"),
    ("train.lerning_rate", "(train.lr)"),
    ("train.learning_rate", "Did you mean 'train.lr'?"),
    ("peft.rr", "Did you mean 'peft.r'?"),
    ("bach_size", "Did you mean 'batch_size' (train.batch_size)?"),
    ("zzz", "Use a dotted key"),
])
def test_unknown_key_suggests(key, expected):
    cfg = TrainConfig()
    with pytest.raises(ConfigError, match="unknown config key") as err:
        cfg.update_config({key: 1})
    assert expected in str(err.value)
    assert cfg == TrainConfig()


def test_unknown_key_inside_a_section_dict():
    with pytest.raises(ConfigError, match=r"train\.lerning_rate: unknown config key"):
        TrainConfig().update_config({"train": {"lerning_rate": 1}})


@pytest.mark.parametrize("updates, expected", [
    ({"lr": -1}, "train.lr: -1.0 is not allowed"),
    ({"batch_size": "abc"}, "train.batch_size: expected an integer, got 'abc'"),
    ({"scheduler": "cosin"}, "Did you mean 'cosine'"),
    ({"device": "tpu"}, "model.device"),
    ({"peft": "dora"}, "peft: a section takes a dict"),
    ({"max_length": 8, "data.min_length": 16}, "data.min_length"),  # a cross-field check
])
def test_bad_value_raises_and_leaves_config_unchanged(updates, expected):
    cfg = TrainConfig().update_config({"seed": 5})
    snapshot = copy.deepcopy(cfg)
    with pytest.raises(ConfigError) as err:
        cfg.update_config({"peft.r": 4, **updates})  # the good key must not half-apply either
    assert expected in str(err.value)
    assert cfg == snapshot


def test_conflicting_duplicates_name_both_keys():
    cfg = TrainConfig()
    with pytest.raises(ConfigError) as err:
        cfg.update_config({"lr": 1e-4, "train.lr": 2e-4})
    assert "'lr'" in str(err.value) and "'train.lr'" in str(err.value)
    with pytest.raises(ConfigError, match="'batch_size'.*'train.batch_size'"):
        cfg.update_config({"batch_size": 2, "train": {"batch_size": 3}})
    assert cfg == TrainConfig()


def test_equal_duplicates_are_fine():
    cfg = TrainConfig().update_config({"lr": 1e-4, "train.lr": "1e-4", "learning_rate": 0.0001})
    assert cfg.train.lr == 1e-4


def test_non_dict_updates_rejected():
    with pytest.raises(ConfigError, match="expected a dict"):
        TrainConfig().update_config([("lr", 1)])
