"""docs/training.md: its Python examples run and register what they say, and every example file
and config key it names exists."""

import re
from pathlib import Path

from tunesmith.config import load_config
from tunesmith.config.update import schema_keys
from tunesmith.training.callbacks import CALLBACKS, build_callbacks
from tunesmith.training.trainers import TRAINERS

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")


def test_python_examples_register_a_callback_and_a_trainer(tmp_path):
    for code in re.findall(r"^```python\n(.*?)^```$", DOC, re.S | re.M):
        exec(compile(code, "docs/training.md", "exec"), {"__name__": "docs_example"})
    assert "loss_alarm" in CALLBACKS and "plain_sft" in TRAINERS
    cfg = load_config(overrides=["train.callbacks=[loss_alarm]", "+train.callback_args={loss_alarm: {limit: 5.0}}"])
    (alarm,) = build_callbacks(cfg.train, tmp_path)
    assert alarm.limit == 5.0


def test_named_files_and_keys_exist():
    for path in set(re.findall(r"examples/[\w/.-]+\.(?:yaml|json)", DOC)):
        assert (ROOT / path).is_file(), path
    keys = schema_keys()
    for key in set(re.findall(r"`((?:train|data)\.[a-z_.]+)`", DOC)):
        assert key.rstrip(".") in keys or key.endswith(".*"), key
    assert "UNLEARNING_RESULTS" not in DOC
