"""A run's decisions, made once from the config and the model's config (no weights loaded)."""

import pytest

from tunesmith.api import FineTuner
from tunesmith.api.resolved_run import Packing, Precision, Task
from tunesmith.cli.main import main
from tunesmith.config import load_config
from tunesmith.errors import ConfigError


def test_the_plan_resolves_every_auto_it_decides():
    plan = FineTuner(load_config(overrides=["model.device=cpu", "train.precision=fp32"])).plan()
    assert (plan.task, plan.trainer, plan.device, plan.precision) == (Task.CAUSAL_LM, "sft", "cpu", Precision.FP32)
    assert plan.packing is Packing.PADDING_FREE and plan.packing.several_examples_per_row
    assert plan.collator == "packed"  # padding-free rows
    assert plan.record()["task"] == "causal_lm" and f"{plan.task}" == "causal_lm"


def test_trainer_traits_decide_the_packing():
    plan = FineTuner(load_config(overrides=["model.device=cpu", "train.trainer=npo", "data=facts-forget"])).plan()
    assert plan.one_example_per_row and plan.needs_retain and plan.packing is Packing.NONE
    assert plan.collator == "causal_lm"


def test_a_trainer_for_another_task_fails_in_the_plan():
    with pytest.raises(ConfigError, match="train.trainer"):
        FineTuner(load_config(overrides=["model=minilm-l6", "train.trainer=sft"])).plan()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    assert main(["train", "--dry-run", f"output_dir={tmp_path / 'run'}", "model.device=cpu"]) == 0
    out = capsys.readouterr().out
    assert "task: causal_lm (auto)" in out and "trainer: sft (auto)" in out
    assert not (tmp_path / "run").exists()


def test_run_json_records_the_plan(tiny_llama_dir, tmp_path):
    from tunesmith.config.run_dir import RunDir

    cfg = load_config(overrides=[f"model.name_or_path={tiny_llama_dir}", "model.device=cpu", "train.precision=fp32",
                                 "train.max_steps=1", "train.batch_size=2", "data.max_samples=4", "data.cache=false",
                                 "eval.before_after=off", f"output_dir={tmp_path / 'run'}"])
    result = FineTuner(cfg).train()
    plan = RunDir(result.run_dir).read_record()["plan"]
    assert (plan["task"], plan["trainer"], plan["device"], plan["precision"]) == ("causal_lm", "sft", "cpu", "fp32")
    assert plan["packing"] == "padding_free" and plan["model_type"] == "llama"
