"""Tests for the packaged data configs (``data=NAME``) and the hub preset table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

import tunesmith.config.compose as compose
from tunesmith.config import load_config
from tunesmith.config.schema import DataConfig
from tunesmith.data.builtin import BUILTIN_DATASETS
from tunesmith.api.data_entry import apply_preset
from tunesmith.data.presets import HUB_PRESETS, preset_for

DATA_CONFIGS = Path(compose.__file__).parent / "configs" / "data"
FORMATS = {"alpaca", "messages", "sharegpt", "prompt_completion", "text", "qa", "classification",
           "pair_classification", "seq2seq"}


def read_yaml(name: str) -> dict:
    return yaml.safe_load((DATA_CONFIGS / f"{name}.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", compose.group_options("data"))
def test_every_data_yaml_loads_through_load_config(name):
    data = load_config(overrides=[f"data={name}"]).data
    assert data.train == read_yaml(name)["train"]
    assert data.format == "auto" or data.format in FORMATS


def test_expected_options_are_packaged():
    assert {"sentiment", "paraphrase", "instruct-mini", *HUB_PRESETS} <= set(compose.group_options("data"))


@pytest.mark.parametrize("name", sorted(HUB_PRESETS))
def test_hub_yaml_and_preset_table_agree(name):
    preset = HUB_PRESETS[name]
    assert preset.name == name
    assert read_yaml(name) == preset.config_values()
    data = load_config(overrides=[f"data={name}"]).data
    for key, value in preset.config_values().items():
        assert getattr(data, key) == value, key


def test_every_non_builtin_yaml_has_a_preset():
    for name in compose.group_options("data"):
        train = read_yaml(name)["train"]
        assert train in BUILTIN_DATASETS or name in HUB_PRESETS, name


@pytest.mark.parametrize("name", ["sentiment", "paraphrase", "instruct-mini"])
def test_builtin_yaml_agrees_with_dataset_metadata(name):
    dataset = BUILTIN_DATASETS.get(name)
    data = load_config(overrides=[f"data={name}"]).data
    assert data.train == name
    assert data.format == dataset.format
    assert tuple(data.label_names) == dataset.label_names


def test_preset_for_matches_ids_aliases_and_subsets():
    assert preset_for("openai/gsm8k").name == "gsm8k"
    assert preset_for("OpenAI/GSM8K").name == "gsm8k"
    assert preset_for("gsm8k", "main").name == "gsm8k"
    assert preset_for("openai/gsm8k", "socratic") is None
    assert preset_for("imdb").name == "imdb"
    assert preset_for("nyu-mll/glue", "mrpc").name == "mrpc"
    assert preset_for("nyu-mll/glue") is None and preset_for("glue", "sst2") is None
    assert preset_for("someone/unknown-data") is None


def test_apply_preset_fills_only_what_is_unset():
    filled = apply_preset(DataConfig(train="openai/gsm8k"))
    assert (filled.subset, filled.format, filled.eval_split_name) == ("main", "qa", "test")
    assert filled.columns == {"question": "question", "answer": "answer"}

    mine = apply_preset(DataConfig(train="stanfordnlp/imdb", format="text", columns={"text": "review"},
                                   eval_split=0.1))
    assert (mine.format, mine.columns, mine.eval_split_name) == ("text", {"text": "review"}, None)
    assert mine.label_names == ["negative", "positive"]

    plain = DataConfig(train="rows.jsonl")
    assert apply_preset(plain) is plain
    samsum = apply_preset(DataConfig(train="samsum"))
    assert samsum.columns == {"source": "dialogue", "target": "summary"} and samsum.format == "seq2seq"
    assert dataclasses.asdict(apply_preset(DataConfig(train="nyu-mll/glue"))) == dataclasses.asdict(
        DataConfig(train="nyu-mll/glue"))
