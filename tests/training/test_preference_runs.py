"""Preference runs end to end on a tiny random Llama: dpo, orpo, kto and reward through FineTuner,
their held-out measurements, and the errors for data or settings that do not fit."""

import json

import pytest

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.errors import ConfigError


def run_config(model_dir, out_dir, *extra):
    return load_config(overrides=[
        f"model.name_or_path={model_dir}", "data.train=arith-pref", "data.max_samples=16",
        f"output_dir={out_dir}", "train.max_steps=2", "train.batch_size=4", "train.lr=1e-3",
        "train.precision=fp32", "train.logging_steps=1", "eval.max_samples=2", "eval.max_new_tokens=8", *extra])


def test_dpo_run_measures_held_out_pairs_before_and_after(tiny_llama_dir, tmp_path):
    result = FineTuner(run_config(tiny_llama_dir, tmp_path / "dpo", "train.trainer=dpo")).train()
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["plan"]["trainer"] == "dpo" and record["plan"]["reference"] == "adapter_off"
    assert record["plan"]["rows"] == "preference"
    results = json.loads((result.run_dir / "eval_results.json").read_text())
    before, after = results["before"], results["after"]
    assert 0 <= before["pair_accuracy"] <= 1 and "reward_accuracy" not in before
    assert {"reward_accuracy", "reward_margin", "pair_accuracy"} <= set(after) and after["pairs"] > 0
    assert results["metric"] == "exact_match"  # arith-pref's generation metric, on prompt + chosen
    logs = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in logs if "loss" in r]
    assert len(trained) == 2 and all("rewards/accuracy" in r and "rewards/margin" in r for r in trained)
    assert "reward accuracy" in (result.run_dir / "report.html").read_text()


@pytest.mark.parametrize("extra", [("train.trainer=orpo",), ("train.trainer=dpo", "train.preference.loss=simpo"),
                                   ("train.trainer=dpo", "peft.method=full", "train.preference.reference=precomputed")])
def test_other_preference_trainers_run(tiny_llama_dir, tmp_path, extra):
    result = FineTuner(run_config(tiny_llama_dir, tmp_path / "run", "eval.before_after=off", *extra)).train()
    assert (result.run_dir / "run.json").is_file()


def test_kto_run_on_unpaired_answers(tiny_llama_dir, tmp_path):
    rows = [{"prompt": f"What is {a} + 1?", "completion": f"#### {a + 1 if a % 2 else a + 2}", "label": a % 2 == 1}
            for a in range(12)]
    data = tmp_path / "kto.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = run_config(tiny_llama_dir, tmp_path / "kto", "train.trainer=kto", f"data.train={data}",
                     "eval.before_after=off")
    result = FineTuner(cfg).train()
    logs = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("kto/reference_point" in r for r in logs)


def test_reward_model_run(tiny_llama_dir, tmp_path):
    result = FineTuner(run_config(tiny_llama_dir, tmp_path / "rm", "train.trainer=reward")).train()
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["task"] == "sequence_classification"
    results = json.loads((result.run_dir / "eval_results.json").read_text())
    assert results["metric"] == "pair_accuracy" and "reward_accuracy" not in results["after"]
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tiny_llama_dir).num_labels == 2  # the base; the run's head has one output
    saved = json.loads((result.run_dir / "adapter_config.json").read_text())
    assert saved["task_type"] == "SEQ_CLS"


def test_sft_on_pairs_and_dpo_on_conversations_are_refused(tiny_llama_dir, tmp_path):
    with pytest.raises(ConfigError, match="the data holds chosen / rejected pairs.*train.trainer=dpo"):
        FineTuner(run_config(tiny_llama_dir, tmp_path / "a", "eval.before_after=off")).train()
    with pytest.raises(ConfigError, match="dpo trains on chosen / rejected pairs"):
        FineTuner(run_config(tiny_llama_dir, tmp_path / "b", "train.trainer=dpo", "data.train=arith",
                             "eval.before_after=off")).train()


def test_settings_that_would_be_ignored_are_refused(tiny_llama_dir, tmp_path):
    with pytest.raises(ConfigError, match="train.preference.beta: configures the preference trainers"):
        FineTuner(run_config(tiny_llama_dir, tmp_path / "a", "data.train=arith", "train.preference.beta=0.3")).train()
    with pytest.raises(ConfigError, match="train.preference.reference: 'copy' is set, but train.trainer=orpo"):
        FineTuner(run_config(tiny_llama_dir, tmp_path / "b", "train.trainer=orpo",
                             "train.preference.reference=copy")).train()
    with pytest.raises(ConfigError, match="full fine-tuning has no adapter to switch off"):
        FineTuner(run_config(tiny_llama_dir, tmp_path / "c", "train.trainer=dpo", "peft.method=full")).train()
    with pytest.raises(ConfigError, match="data.packing: 'pack' cannot be used"):
        FineTuner(run_config(tiny_llama_dir, tmp_path / "d", "train.trainer=dpo", "data.packing=pack")).train()


def test_eval_of_a_finished_dpo_run_reports_pairs_against_its_starting_model(tiny_llama_dir, tmp_path):
    sft = FineTuner(run_config(tiny_llama_dir, tmp_path / "sft", "data.train=arith", "eval.before_after=off",
                               "peft.r=4")).train()
    dpo = FineTuner(run_config(tiny_llama_dir, tmp_path / "dpo", "train.trainer=dpo", f"model.adapter={sft.run_dir}",
                               "train.lr=1e-2", "eval.before_after=off")).train()
    record = json.loads((dpo.run_dir / "run.json").read_text())
    assert record["plan"]["reference"] == "copy"  # it continued an adapter: the reference is that adapter
    result = FineTuner.load(dpo.run_dir).evaluate(max_samples=2)
    assert result["metric"] == "exact_match"
    assert {"pair_accuracy", "reward_accuracy", "reward_margin"} <= set(result) and result["pairs"] > 0
    assert result["reward_margin"] != 0  # measured against the starting adapter, not the tuned one
    base = FineTuner.load(sft.run_dir)
    base.config.update_config({"data.train": "arith-pref", "data.max_samples": 16})
    plain = base.evaluate(max_samples=2)
    assert "pair_accuracy" in plain and "reward_accuracy" not in plain  # an sft run has no reference


def test_inspecting_pairs_reports_only_the_packings_they_allow(tiny_llama_dir, tmp_path):
    report = FineTuner(run_config(tiny_llama_dir, tmp_path / "x")).inspect_data(num_examples=1)
    assert set(report["padding"]) == {"none", "padding_free"}
    assert "chosen:" in report["examples"][0] and "rejected:" in report["examples"][0]


def test_grpo_settings_for_another_trainer_are_refused(tiny_llama_dir, tmp_path):
    with pytest.raises(ConfigError, match="train.grpo.group_size: configures train.trainer=grpo, but train.trainer=dpo"):
        FineTuner(run_config(tiny_llama_dir, tmp_path / "a", "train.trainer=dpo", "train.grpo.group_size=4")).train()


def test_tunesmith_train_kto_on_arith_kto(tiny_llama_dir, tmp_path, capsys):
    """The packaged ``train=kto`` and ``data=arith-kto`` configs, through the command line."""
    from tunesmith.cli.main import main

    out = tmp_path / "kto"
    code = main(["train", "train=kto", "data=arith-kto", f"model.name_or_path={tiny_llama_dir}",
                 "data.max_samples=16", f"output_dir={out}", "train.max_steps=2", "train.batch_size=4",
                 "train.logging_steps=1", "train.precision=fp32", "eval.max_samples=2", "eval.max_new_tokens=8"])
    assert code == 0, capsys.readouterr()
    record = json.loads((out / "run.json").read_text())
    assert record["plan"]["trainer"] == "kto" and record["plan"]["rows"] == "unpaired_preference"
    assert record["plan"]["reference"] == "adapter_off" and record["global_step"] == 2
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in logs if "loss" in r]
    assert len(trained) == 2 and all("kto/reference_point" in r for r in trained)
    results = json.loads((out / "eval_results.json").read_text())
    assert results["metric"] == "exact_match" and {"before", "after"} <= set(results)
    asked = [s["question"] for s in results["after"]["samples"]]
    assert len(asked) == 2 and len(set(asked)) == 2  # a problem's two answers are one held-out question
