"""One tiny run with the options users reach for: evaluation every N steps, early stopping, the best
checkpoint kept, a checkpoint limit, 8-bit AdamW, TensorBoard and MLflow files, a registered
callback with arguments, and the curves PNG."""

import json

import pytest
from transformers import TrainerCallback

from tunesmith.api import FineTuner
from tunesmith.config import load_config
from tunesmith.errors import ConfigError
from tunesmith.training.callbacks import CALLBACKS, check_callbacks, register_callback


@register_callback("test_recorder", overwrite=True)
class Recorder(TrainerCallback):
    """Remembers the optimizer class, every logged step and its own argument."""

    runs: list = []

    def __init__(self, run_dir, tag: str = "none"):
        self.run_dir, self.tag = run_dir, tag
        self.optimizer = None
        self.steps = []
        Recorder.runs.append(self)

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the optimizer
        self.optimizer = (type(inner).__module__.split(".")[0], getattr(getattr(inner, "args", None), "optim_bits", 32))

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.steps.append(state.global_step)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_llama_dir):
    tmp = tmp_path_factory.mktemp("options")
    rows = [{"instruction": f"Add {a} and {b}.", "output": f"#### {a + b}"} for a in range(8) for b in range(5)]
    data = tmp / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = load_config(overrides=[
        f"model.name_or_path={tiny_llama_dir}", f"data.train={data}", "data.format=alpaca", "data.eval_split=0.2",
        f"output_dir={tmp / 'out'}", "train.max_steps=30", "train.batch_size=4", "train.lr=1e-2",
        "train.logging_steps=1", "train.precision=fp32", "eval.before_after=off", "data.cache=false",
        "train.eval_steps=2", "train.keep_best=true", "train.save_limit=1", "train.early_stopping_patience=1",
        # Any change below 1000 nats counts as "no improvement": training stops at the second evaluation.
        "train.early_stopping_threshold=1000", "train.optimizer=adamw_8bit", "train.log_to=[tensorboard,mlflow]",
        "train.callbacks=[test_recorder]", "+train.callback_args={test_recorder: {tag: hello}}"])
    Recorder.runs.clear()
    result = FineTuner(cfg).train()
    return result, Recorder.runs[-1]


def test_early_stopping_ends_at_the_second_evaluation(run):
    result, _ = run
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["global_step"] == 4  # evaluations at steps 2 and 4, patience 1
    logs = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "eval_loss" in r] == [2, 4]


def test_best_checkpoint_is_the_saved_model(run):
    from safetensors.torch import load_file

    result, _ = run
    logs = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["eval_loss"] for r in logs if "eval_loss" in r}
    best = min(evals, key=evals.get)
    checkpoint = result.run_dir / "checkpoints" / f"checkpoint-{best}"
    saved = load_file(result.run_dir / "adapter_model.safetensors")
    kept = load_file(checkpoint / "adapter_model.safetensors")
    assert saved.keys() == kept.keys() and all((saved[k] == kept[k]).all() for k in saved)


def test_registered_callback_gets_its_arguments_and_sees_8bit_adamw(run):
    result, recorder = run
    assert recorder.tag == "hello" and recorder.run_dir == result.run_dir
    assert recorder.optimizer == ("bitsandbytes", 8)
    assert recorder.steps[0] == 1 and max(recorder.steps) == 4


def test_tensorboard_events_hold_the_loss(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, _ = run
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("eval/loss")] == [2, 4]


def test_mlflow_file_store_is_readable(run):
    from tunesmith.training.loggers import mlflow_client

    result, _ = run
    store = result.run_dir / "mlruns"
    assert store.is_dir()
    client = mlflow_client(store.resolve().as_uri())
    experiment = client.get_experiment_by_name("tunesmith")
    (mlrun,) = client.search_runs([experiment.experiment_id])
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == result.run_dir.name
    assert [m.step for m in client.get_metric_history(mlrun.info.run_id, "loss")] == [1, 2, 3, 4]
    assert mlrun.data.params["train.optimizer"] == "adamw_8bit"


def test_curves_png_is_written(run):
    result, _ = run
    png = result.run_dir / "loss_curve.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_callback_names_and_arguments_are_checked():
    cfg = load_config(overrides=["train.callbacks=[test_recordr]"])
    with pytest.raises(ConfigError, match="Did you mean 'test_recorder'"):
        check_callbacks(cfg.train)
    cfg = load_config(overrides=["train.callbacks=[test_recorder]", "+train.callback_args={test_recorder: {tga: x}}"])
    with pytest.raises(ConfigError, match="'tga' is not a parameter"):
        check_callbacks(cfg.train)
    assert "early_stopping" in CALLBACKS.names()
