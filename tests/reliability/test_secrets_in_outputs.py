"""A planted token never reaches anything a run writes: config.yaml, metrics.jsonl, run.json,
report.html, TensorBoard and MLflow files, checkpoints, printed output and log records."""

from __future__ import annotations

import logging
from transformers import TrainerCallback

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.config.secrets import MASK
from tunesmith.training import register_callback

ENV_TOKEN = "hf_PlantedEnvironmentToken0123456789"
CONFIG_TOKEN = "cfg-planted-api-token-9876543210"


@register_callback("test_notifier", overwrite=True)
class Notifier(TrainerCallback):
    """A user callback that needs a credential, and logs carelessly."""

    def __init__(self, api_token: str, channel: str = "runs") -> None:
        self.api_token, self.channel = api_token, channel

    def on_train_begin(self, args, state, control, **kwargs):
        logging.getLogger("tunesmith.test.notifier").warning("connecting with %s to %s", self.api_token, self.channel)
        logging.getLogger("some.library").warning("HF token in use: %s", ENV_TOKEN)


def test_planted_tokens_appear_in_no_output(overrides, tmp_path, monkeypatch, capfd, caplog):
    monkeypatch.setenv("HF_TOKEN", ENV_TOKEN)
    out = tmp_path / "run"
    cfg = load_config(overrides=overrides(
        out, "train.max_steps=3", "train.log_to=[tensorboard,mlflow]", "train.callbacks=[test_notifier]",
        f"train.callback_args={{test_notifier: {{api_token: {CONFIG_TOKEN}, channel: 'c-{ENV_TOKEN}'}}}}"))
    with caplog.at_level(logging.WARNING):
        FineTuner(cfg).train()
    printed = capfd.readouterr()

    written = [p for p in out.rglob("*") if p.is_file()]
    for name in ("config.yaml", "metrics.jsonl", "run.json", "report.html"):
        assert (out / name).is_file(), name
    assert any("tfevents" in p.name for p in written) and any("mlruns" in p.parts for p in written)
    assert any("checkpoints" in p.parts for p in written)
    for token in (ENV_TOKEN, CONFIG_TOKEN):
        raw = token.encode()
        leaks = [str(p.relative_to(out)) for p in written if raw in p.read_bytes()]
        assert not leaks, f"{token} written to {leaks}"
        assert token not in printed.out and token not in printed.err
        assert token not in caplog.text
    assert MASK in (out / "config.yaml").read_text() and MASK in caplog.text
    mlflow_params = [p for p in written if "params" in p.parts]
    assert any(p.read_text() == MASK for p in mlflow_params)  # the secret parameter is recorded, masked
    assert len(written) > 20  # checkpoints, dashboards and records were all searched

