"""A length the user gives (epochs or max_steps) beats the packaged step limit at every entry point,
and two lengths the user gives that disagree produce a message naming the one used."""

import json
import logging

import pytest

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.config.lengths import describe_length, settle_length

PACKAGED_STEPS = 150  # configs/train/default.yaml


def lengths(cfg):
    return cfg.train.epochs, cfg.train.max_steps


def test_the_packaged_job_has_a_step_limit():
    assert lengths(load_config()) == (1.0, PACKAGED_STEPS)


def test_a_bare_train_config_is_the_packaged_default_job():
    import dataclasses

    from tunesmith.config import TrainConfig

    assert dataclasses.asdict(TrainConfig()) == dataclasses.asdict(load_config())
    cfg = TrainConfig()
    cfg.update_config({"num_train_epochs": 2})  # its step limit is a default too: epochs replace it
    assert lengths(cfg) == (2.0, -1)


# -- one test per entry point -------------------------------------------------------------------
def test_constructor_trainer_config_dict(caplog):
    with caplog.at_level(logging.WARNING):
        assert lengths(FineTuner(trainer_config={"num_train_epochs": 3}).config) == (3.0, -1)
        assert lengths(FineTuner(trainer_config={"train.epochs": 2}).config) == (2.0, -1)
        assert lengths(FineTuner(trainer_config={"train": {"epochs": 4}}).config) == (4.0, -1)
    assert not [r for r in caplog.records if r.name.startswith("tunesmith")]  # packaged default: no conflict


def test_constructor_training_arguments(tmp_path):
    from transformers import TrainingArguments

    cfg = FineTuner(trainer_config=TrainingArguments(str(tmp_path), num_train_epochs=3)).config
    assert lengths(cfg) == (3.0, -1)
    cfg = FineTuner(trainer_config=TrainingArguments(str(tmp_path))).config
    assert lengths(cfg) == (3.0, -1)  # transformers' own default length: 3 epochs
    cfg = FineTuner(trainer_config=TrainingArguments(str(tmp_path), max_steps=7)).config
    assert lengths(cfg) == (1.0, 7)  # transformers' default epochs are not the user's: no message


def test_train_keyword_arguments(monkeypatch, tmp_path):
    import tunesmith.api.train_job as train_job

    seen = {}
    monkeypatch.setattr(train_job, "run_training", lambda tuner: seen.setdefault("cfg", tuner.config))
    tuner = FineTuner()
    tuner.train(tmp_path / "run", 3)  # positional, as in `finetuner.train(output_dir, num_train_epochs)`
    assert lengths(seen["cfg"]) == (3.0, -1)
    tuner.train(num_train_epochs=2)
    assert lengths(seen["cfg"]) == (2.0, -1)


def test_command_line_override():
    assert lengths(load_config(overrides=["train.epochs=3"])) == (3.0, -1)
    assert lengths(load_config(overrides=["train=quick", "train.epochs=2"])) == (2.0, -1)


def test_yaml_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("train:\n  epochs: 3\n")
    assert lengths(load_config(path)) == (3.0, -1)
    path.write_text("train:\n  max_steps: 12\n")
    assert lengths(load_config(path)) == (1.0, 12)


def test_update_config_on_a_loaded_config():
    cfg = load_config()
    cfg.update_config({"epochs": 5})
    assert lengths(cfg) == (5.0, -1)


# -- two given lengths that disagree ------------------------------------------------------------
def test_both_lengths_at_once_warns_and_uses_max_steps(caplog):
    with caplog.at_level(logging.WARNING):
        cfg = load_config(overrides=["train.epochs=3", "train.max_steps=6"])
    assert lengths(cfg) == (3.0, 6)
    assert "train.max_steps is used" in caplog.text and "the command line" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        cfg = FineTuner(trainer_config={"num_train_epochs": 3, "max_steps": 6}).config
    assert lengths(cfg) == (3.0, 6)
    assert "trainer_config gives both" in caplog.text


def test_a_later_length_replaces_an_earlier_given_one_with_a_warning(tmp_path, caplog):
    path = tmp_path / "job.yaml"
    path.write_text("train:\n  max_steps: 12\n")
    with caplog.at_level(logging.WARNING):
        cfg = load_config(path, ["train.epochs=2"])
    assert lengths(cfg) == (2.0, -1)
    assert "replaces train.max_steps=12" in caplog.text and str(path) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        tuner = FineTuner(trainer_config={"max_steps": 9})
        tuner.config.update_config({"num_train_epochs": 2})
    assert lengths(tuner.config) == (2.0, -1)
    assert "replaces train.max_steps=9 given earlier (trainer_config)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        cfg = load_config(overrides=["train.epochs=3"])
        cfg.update_config({"max_steps": 4})
    assert lengths(cfg) == (3.0, 4)
    assert "train.max_steps=4 from update_config decides the length" in caplog.text


def test_settle_length_rules():
    assert settle_length(1.0, 80, "packaged", {}, "x") == {}
    assert settle_length(1.0, 80, "packaged", {"train.max_steps": 5}, "x") == {"train.max_steps": 5}
    assert settle_length(3.0, -1, None, {"train.epochs": 1.0}, "x") == {"train.epochs": 1.0, "train.max_steps": -1}
    assert describe_length(2.0, -1) == "2 epochs (train.epochs)"


# -- the epochs asked for are the epochs run ----------------------------------------------------
def test_a_run_lasts_the_epochs_given_to_train(tiny_llama_dir, tmp_path, capsys):
    rows = [{"instruction": f"Add {a} and {b}.", "output": f"sum is {a + b}"} for a in range(4) for b in range(2)]
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    tuner = FineTuner(str(tiny_llama_dir), device="cpu", dataset_name=str(data),
                      trainer_config={"train.batch_size": 4, "train.precision": "fp32", "data.format": "alpaca",
                                      "eval.before_after": "off", "data.cache": False, "data.packing": "none"})
    result = tuner.train(tmp_path / "run", 2)
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["global_step"] == 2 * (len(rows) // 4)  # 8 rows / 4 per batch = 2 steps per epoch
    assert "Length: 2 epochs (train.epochs)" in capsys.readouterr().out


def test_command_line_train(monkeypatch, tmp_path):
    """`tunesmith train job.yaml train.epochs=2`: the whole CLI path, up to the run itself."""
    import tunesmith.cli.printing as printing
    from tunesmith.cli.main import main

    seen = []
    monkeypatch.setattr(FineTuner, "train", lambda self: seen.append(self.config))
    monkeypatch.setattr(printing, "print_summary", lambda *args: None)
    assert main(["train", "train.epochs=2"]) == 0
    path = tmp_path / "job.yaml"
    path.write_text("train:\n  epochs: 4\n")
    assert main(["train", str(path)]) == 0
    assert [lengths(cfg) for cfg in seen] == [(2.0, -1), (4.0, -1)]


@pytest.mark.parametrize("key", ["epochs", "max_steps"])
def test_a_length_that_is_not_a_number_in_a_yaml_file_names_the_file(tmp_path, key):
    from tunesmith.errors import ConfigError

    path = tmp_path / "run.yaml"
    path.write_text(f"train:\n  {key}: A\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert f"train.{key}" in str(err.value) and "run.yaml" in str(err.value)
