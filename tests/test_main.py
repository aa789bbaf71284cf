"""tunesmith.main(), the CLI and FineTuner: the same settings give the same config, run and losses."""

import dataclasses
import json

import pytest

import tunesmith
from tunesmith.api import FineTuner
from tunesmith.config import load_config, read_saved_config
from tunesmith.errors import ConfigError


def losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def test_main_runs_like_the_cli(tmp_path, tiny_llama_dir, alpaca_file, capsys):
    shared = {"data.format": "alpaca", "train.logging_steps": 1, "train.precision": "fp32",
              "train.lr": 1e-2, "eval.before_after": "off"}
    result = tunesmith.main(model=str(tiny_llama_dir), dataset=str(alpaca_file), max_steps=3, batch_size=4,
                            device="cpu", output_dir=str(tmp_path / "main"), **shared)

    run_dir = result.run_dir
    assert {"adapter_model.safetensors", "adapter_config.json", "config.yaml"} <= {p.name for p in run_dir.iterdir()}
    assert f"Saved to {run_dir}" in capsys.readouterr().out  # the CLI's end-of-run summary

    # What `tunesmith train model=... data=... train.max_steps=3 ...` resolves to.
    cli = [f"model={tiny_llama_dir}", f"data={alpaca_file}", "train.max_steps=3", "train.batch_size=4",
           "model.device=cpu", *(f"{k}={v}" for k, v in shared.items())]
    saved = read_saved_config(run_dir / "config.yaml")
    assert dataclasses.replace(saved, output_dir=None) == load_config(overrides=cli)

    # The same settings through the command line and through FineTuner give the same resolved
    # config and the same loss curve (same seed).
    from tunesmith.cli.main import main as cli_main

    assert cli_main(["train", *cli, f"output_dir={tmp_path / 'cli'}"]) == 0
    tuner = FineTuner(str(tiny_llama_dir), dataset_name=str(alpaca_file), device="cpu",
                      trainer_config={"max_steps": 3, "batch_size": 4, **shared})
    reference = tuner.train(output_dir=tmp_path / "tuner")
    for other in (tmp_path / "cli", reference.run_dir):
        other_cfg = read_saved_config(other / "config.yaml")
        assert dataclasses.replace(other_cfg, output_dir=None) == dataclasses.replace(saved, output_dir=None)
        got, want = losses(run_dir), losses(other)
        assert [s for s, _ in got] == [s for s, _ in want] == [1, 2, 3]
        assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], abs=1e-6)


def test_main_checks_overrides_before_loading_and_copies_the_config():
    cfg = load_config()
    with pytest.raises(ConfigError, match="train.lr"):
        tunesmith.main(cfg, lr=-1)
    with pytest.raises(ConfigError, match="Did you mean 'learning_rate'"):
        tunesmith.main(cfg, lerning_rate=1e-4)
    assert cfg == load_config()  # the caller's config is never changed by overrides


def test_main_is_a_lazy_export():
    assert "main" in tunesmith.__all__
    assert tunesmith.main.__module__ == "tunesmith.entry"
