"""The typed results of a run write the same JSON files as before: run.json key for key, in order, and
eval_results.json."""

import json
from types import SimpleNamespace

from tunesmith.api.results import BeforeAfter, RunRecord, TrainedModel
from tunesmith.config.run_dir import RunDir

RUN_JSON_KEYS = ["finished", "train_seconds", "train_loss", "global_step", "device", "precision", "task", "method",
                 "trainable_parameters", "total_parameters", "metric", "before_score", "after_score", "resources",
                 "data", "nan_skipped_steps", "speed", "memory", "plan"]


def trained(**changes):
    values = dict(output=SimpleNamespace(training_loss=1.25, global_step=12), train_seconds=3.14159, trainable=10,
                  total=100, resources={"peak_rss_mb": 5.0}, nan_skipped=1, memory={"trim": "off"},
                  speed={"packing": "padding_free"})
    values.update(changes)
    return TrainedModel(**values)


def test_run_record_writes_the_run_json_keys_in_order(tmp_path):
    before = {"metric": "exact_match", "score": 0.25, "correct": 1, "total": 4}
    after = {**before, "score": 0.75, "correct": 3}
    record = RunRecord.from_run(trained(), device="cpu", precision="fp32", task="causal_lm", method="lora",
                                before=before, after=after, data={"train": {"rows": 4}}, plan={"trainer": "sft"})
    RunDir(tmp_path).write_record(record.to_dict())
    written = json.loads((tmp_path / "run.json").read_text())
    assert list(written) == RUN_JSON_KEYS
    assert (written["train_seconds"], written["train_loss"], written["global_step"]) == (3.1, 1.25, 12)
    assert (written["metric"], written["before_score"], written["after_score"]) == ("exact_match", 0.25, 0.75)
    assert written["nan_skipped_steps"] == 1 and written["plan"] == {"trainer": "sft"}
    assert RunDir(tmp_path).read_record() == written


def test_a_run_measured_by_nothing_records_nulls_and_empty_sections():
    record = RunRecord.from_run(trained(resources=None, speed=None, memory=None), device="cuda", precision="bf16",
                                task="causal_lm", method="full", before=None, after=None, data=None, plan={})
    out = record.to_dict()
    assert (out["metric"], out["before_score"], out["after_score"]) == (None, None, None)
    assert (out["resources"], out["speed"], out["memory"], out["data"]) == ({}, {}, {}, {})


def test_eval_results_json(tmp_path):
    RunDir(tmp_path).write_eval_results(BeforeAfter("unlearning", {"forget_loss": 1.0}, {"forget_loss": 3.0}).to_dict())
    assert json.loads((tmp_path / "eval_results.json").read_text()) == {
        "metric": "unlearning", "before": {"forget_loss": 1.0}, "after": {"forget_loss": 3.0}}
