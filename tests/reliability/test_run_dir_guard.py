"""The run-directory and resume guards: which checkpoint ``train.resume`` picks, incomplete ones
ignored, a changed config refused (unless --force) with every difference listed, and no writing
into a folder that is not an unfinished run of the same config (unless --overwrite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.config import load_config, save_config
from tunesmith.errors import ConfigError, RunDirError
from tunesmith.training.checkpoints import MARKER, complete_checkpoints, rotate, write_marker
from tunesmith.api.choices.training import plan_resume
from tunesmith.training.resume import apply_plan, differences, fingerprint, truncate_metrics


def config(out: Path, *extra: str):
    return load_config(overrides=[f"output_dir={out}", "data.train=arith", "train.seed=3", *extra])


def fake_checkpoint(run: Path, step: int, cfg, complete: bool = True) -> Path:
    path = run / "checkpoints" / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"w" * (100 + step))
    (path / "optimizer.pt").write_bytes(b"o" * 50)
    if complete:
        write_marker(path, step, fingerprint(cfg), {"tr_loss": 0.0})
    return path


def started_run(out: Path, *extra: str, steps=(1, 2)):
    cfg = config(out, *extra)
    out.mkdir(parents=True)
    save_config(cfg, out / "config.yaml")
    for step in steps:
        fake_checkpoint(out, step, cfg)
    return cfg


def test_a_new_or_empty_folder_starts_fresh(tmp_path):
    assert plan_resume(config(tmp_path / "new")).checkpoint is None
    (tmp_path / "empty").mkdir()
    plan = plan_resume(config(tmp_path / "empty"))
    assert plan.checkpoint is None and not plan.continuing
    assert plan_resume(load_config()).run_dir is None  # the default job: a new timestamped folder


def test_auto_resumes_from_the_newest_complete_checkpoint(tmp_path):
    out = tmp_path / "run"
    cfg = started_run(out, steps=(1, 2, 3))
    fake_checkpoint(out, 4, cfg, complete=False)  # killed while writing: no marker
    broken = fake_checkpoint(out, 5, cfg)
    (broken / "optimizer.pt").write_bytes(b"short")  # a file that does not match the marker
    plan = plan_resume(config(out))
    assert plan.continuing and plan.checkpoint.step == 3
    assert [c.step for c in complete_checkpoints(out / "checkpoints")] == [1, 2, 3]


def test_auto_reports_and_moves_aside_damaged_checkpoints(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = started_run(out, steps=(1, 2, 3))
    fake_checkpoint(out, 4, cfg, complete=False)  # no marker
    flipped = out / "checkpoints" / "checkpoint-3" / "adapter_model.safetensors"
    data = bytearray(flipped.read_bytes())
    data[10] ^= 0xFF  # same size, different bytes
    flipped.write_bytes(bytes(data))
    plan = plan_resume(config(out))
    assert plan.checkpoint.step == 2
    err = capsys.readouterr().err
    for step, why in ((4, "no valid"), (3, "adapter_model.safetensors: its bytes changed")):
        assert f"checkpoint-{step} is damaged ({why}" in err and f".damaged-checkpoint-{step}" in err
        assert (out / "checkpoints" / f".damaged-checkpoint-{step}").is_dir()
        assert not (out / "checkpoints" / f"checkpoint-{step}").exists()
    assert plan_resume(config(out)).checkpoint.step == 2 and "damaged" not in capsys.readouterr().err
    explicit = fake_checkpoint(out, 9, cfg)
    (explicit / "optimizer.pt").write_bytes(b"O" * 50)  # same size, other bytes
    with pytest.raises(RunDirError, match="optimizer.pt: its bytes changed"):
        plan_resume(config(out, f"train.resume={explicit}"))


def test_changed_config_is_refused_with_every_difference(tmp_path):
    out = tmp_path / "run"
    started_run(out)
    with pytest.raises(ConfigError) as err:
        plan_resume(config(out, "train.seed=4", "train.batch_size=2", "data.train=sentiment",
                           "model.name_or_path=minilm-l6", "train.lr=1e-5"))
    message = str(err.value)
    for change in ("train.seed: 3 -> 4", "train.batch_size: 8 -> 2", "data.train: 'arith' -> 'sentiment'",
                   "model.name_or_path: 'smollm2-135m-instruct' -> 'minilm-l6'", "--force"):
        assert change in message, change
    assert "train.lr" not in message  # the learning rate may change on resume
    plan = plan_resume(config(out, "train.seed=4", "force_resume=true"))
    assert plan.checkpoint.step == 2


def test_folder_that_is_not_a_run_of_this_config_is_refused(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(RunDirError, match="not empty"):
        plan_resume(config(foreign))
    assert plan_resume(config(foreign, "overwrite=true")).checkpoint is None

    finished = tmp_path / "finished"
    started_run(finished)
    (finished / "run.json").write_text("{}")
    with pytest.raises(RunDirError, match="finished run"):
        plan_resume(config(finished))


def test_unfinished_run_without_checkpoints_restarts_in_place(tmp_path):
    out = tmp_path / "run"
    started_run(out, steps=())
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    fake_checkpoint(out, 1, config(out), complete=False)
    plan = plan_resume(config(out))
    assert plan.continuing and plan.checkpoint is None
    apply_plan(plan, out)
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()
    with pytest.raises(ConfigError, match="train.seed: 3 -> 9"):
        plan_resume(config(out, "train.seed=9"))


def test_resume_none_and_overwrite(tmp_path):
    out = tmp_path / "run"
    started_run(out)
    with pytest.raises(RunDirError, match="train.resume=none"):
        plan_resume(config(out, "train.resume=none"))
    plan = plan_resume(config(out, "overwrite=true"))
    assert plan.checkpoint is None
    apply_plan(plan, out)
    assert not (out / "checkpoints").exists()  # old checkpoints cannot leak into the new run


def test_explicit_resume_paths(tmp_path):
    out = tmp_path / "run"
    cfg = started_run(out)
    incomplete = fake_checkpoint(out, 3, cfg, complete=False)
    with pytest.raises(RunDirError, match=r"not a complete checkpoint .*newest complete one there is .*checkpoint-2"):
        plan_resume(config(tmp_path / "new", f"train.resume={incomplete}"))
    plan = plan_resume(config(tmp_path / "new", f"train.resume={out / 'checkpoints' / 'checkpoint-1'}"))
    assert plan.checkpoint.step == 1 and plan.run_dir == tmp_path / "new"
    plan = plan_resume(load_config(overrides=["data.train=arith", "train.seed=3", f"train.resume={out}"]))
    assert plan.checkpoint.step == 2 and plan.run_dir == out  # a run directory: its newest, continued there
    with pytest.raises(ConfigError, match="does not exist"):
        plan_resume(config(out, f"train.resume={tmp_path / 'nope'}"))
    with pytest.raises(ConfigError, match="train.seed: 3 -> 5"):
        plan_resume(config(tmp_path / "other", "train.seed=5", f"train.resume={out}"))


def test_metrics_after_the_checkpoint_are_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 6)) + '{"step": 6, "lo')
    assert truncate_metrics(path, 3) == 3
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]


def test_rotation_keeps_the_newest_and_the_best(tmp_path):
    out = tmp_path / "run"
    cfg = started_run(out, steps=(1, 2, 3, 4, 5))
    (out / "checkpoints" / ".deleting-checkpoint-0-1-2").mkdir()
    removed = rotate(out / "checkpoints", 2, keep=str(out / "checkpoints" / "checkpoint-2"))
    assert [p.name for p in removed] == ["checkpoint-1", "checkpoint-3", "checkpoint-4"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-5"]
    assert (out / "checkpoints" / "checkpoint-5" / MARKER).is_file() and cfg


def test_differences_lists_each_key():
    assert differences({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ["b: 2 -> 3", "c: '(unset)' -> 4"]


def test_cli_flags_reach_the_config(monkeypatch):
    from tunesmith.api import FineTuner
    from tunesmith.cli.main import main

    seen = {}

    def capture(config_file, overrides):
        seen["cfg"] = load_config(config_file, overrides)
        raise RunDirError("stop here")

    monkeypatch.setattr(FineTuner, "from_yaml", staticmethod(capture))
    assert main(["train", "train.seed=5", "--force", "--overwrite", "--allow-outside-paths"]) == 2
    cfg = seen["cfg"]
    assert cfg.force_resume and cfg.overwrite and cfg.allow_outside_paths and cfg.train.seed == 5
