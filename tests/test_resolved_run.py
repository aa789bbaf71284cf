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


def test_the_plan_holds_every_late_decision_too():
    cfg = load_config(overrides=["model.device=cpu", "train.precision=fp32", "train.memory_trim=off"])
    plan = FineTuner(cfg).plan()
    assert plan.attention == "segments" and "one SDPA call per example" in plan.attention_reason  # cpu, padding-free
    assert plan.template == "own" and plan.resume == "newest" and plan.distributed_backend == "gloo"
    assert not plan.memory_trim and plan.memory_trim_reason == "train.memory_trim=off"
    assert not plan.cast_frozen_weights  # fp32: nothing is cast
    assert plan.metric == "exact_match"  # the built-in arith's own metric, known before reading
    lines = plan.describe(cfg)
    assert "template: own (auto)" in lines and "memory_trim: False" in lines
    assert "format: decided when the data is read (auto)" in lines  # arith's rows: detected from the columns


def test_a_named_setting_is_kept_and_not_marked_auto():
    cfg = load_config(overrides=["model.device=cpu", "train.attention=eager", "data.template=chatml",
                                 "data.format=qa", "eval.metric=perplexity", "train.resume=none"])
    plan = FineTuner(cfg).plan()
    assert (plan.attention, plan.template, plan.format, plan.metric, plan.resume) == (
        "eager", "chatml", "qa", "perplexity", "none")
    assert "attention: eager" in plan.describe(cfg) and "template: chatml" in plan.describe(cfg)


def test_after_reading_adds_only_what_the_data_settles():
    plan = FineTuner(load_config(overrides=["model.device=cpu"])).plan()
    assert plan.after_reading(format="qa").format == "qa" and plan.format is None
    with pytest.raises(TypeError, match="trainer is decided before reading"):
        plan.after_reading(trainer="dpo")


def test_default_trainers_are_registry_traits():
    from tunesmith.api.choices.task import resolve_trainer, scores_answers
    from tunesmith.training.trainers import trainers_by_task

    assert trainers_by_task() == {"causal_lm": "sft", "seq2seq": "seq2seq",
                                  "sequence_classification": "classification"}
    assert resolve_trainer("auto", "causal_lm") == "sft"
    assert scores_answers("reward") and not scores_answers("dpo") and not scores_answers("auto")


def test_data_settings_as_written_become_chosen_values():
    from tunesmith.api.data_entry import concrete_data
    from tunesmith.config.schema import DataConfig, MixSource

    built_in = concrete_data(DataConfig(train="arith-pref", mix=[MixSource(train="arith")]))
    assert (built_in.format, built_in.template, built_in.packing) == ("preference", None, "none")
    assert built_in.mix[0].format is None  # auto: detected from its columns
    assert concrete_data(DataConfig(train="openai/gsm8k")).format == "qa"  # the hub preset's
    assert concrete_data(DataConfig(train="rows.jsonl", template="tags")).template == "tags"
    assert concrete_data(DataConfig(train="rows.jsonl")).format is None


def test_run_json_records_what_the_data_settled(tiny_llama_dir, tmp_path):
    from tunesmith.config.run_dir import RunDir

    cfg = load_config(overrides=[f"model.name_or_path={tiny_llama_dir}", "model.device=cpu", "train.precision=fp32",
                                 "train.max_steps=1", "train.batch_size=2", "data.max_samples=4", "data.cache=false",
                                 "eval.before_after=off", f"output_dir={tmp_path / 'run'}"])
    plan = RunDir(FineTuner(cfg).train().run_dir).read_record()["plan"]
    assert plan["format"] == "messages"  # arith's rows, detected from their columns
    assert plan["attention"] in ("segments", "sdpa") and plan["template"] == "own"
    assert plan["resume"] == "newest" and plan["save_strategy"] in ("no", "steps")
