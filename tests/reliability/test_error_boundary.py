"""Every command ends in one error boundary: a user's mistake is one line naming the key, file or field
and exit code 2, found before any model is loaded; an internal error is a short report with the
traceback in a file, never on the console; no secret reaches either."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from tunesmith.api import FineTuner
from tunesmith.cli.main import main
from tunesmith.config.secrets import MASK, mask_text

URL_PASSWORD = "pw-Planted-5f3a9c1e"
HF_SHAPED = "hf_PlantedShapeToken0123456789abcd"


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fails the test if a model would be loaded; returns the list of attempted loads."""
    calls = []

    def refuse(self, *args, **kwargs):
        calls.append(args)
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(FineTuner, "_load_model", refuse)
    return calls


@pytest.fixture
def error_logs(tmp_path, monkeypatch):
    """Error logs go under a temporary cache folder."""
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "errors"


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def _bad_inputs(tmp_path):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n\n")
    dup = tmp_path / "dup.yaml"
    dup.write_text("train:\n  lr: 1.0e-3\n  seed: 3\n  lr: 2.0e-3\n")
    return {
        "seed below 0": (["train.seed=-1"], "train.seed"),
        "seed above 2**32-1": (["train.seed=4294967296"], "train.seed"),
        "lr=inf": (["train.lr=inf"], "train.lr"),
        "lr=nan": (["train.lr=nan"], "train.lr"),
        "epochs overflow": (["train.epochs=1e999"], "train.epochs"),
        "huge integer": ([f"train.max_steps={10**30}"], "train.max_steps"),
        "output_dir is a file": ([f"output_dir={a_file}"], "output_dir"),
        "output_dir under a file": ([f"output_dir={a_file}/run"], "output_dir"),
        "output_dir cannot be created": (["output_dir=/proc/tunesmith-no-such/run"], "output_dir"),
        "loader_args keyword": (["model.loader_args={no_such_option: 1}"], "model.loader_args.no_such_option"),
        "loader_args own key": (["model.loader_args={revision: main}"], "model.loader_args.revision"),
        "trainer not a factory": (["train.trainer=builtins:len"], "train.trainer"),
        "eval_steps without eval data": (["train.eval_steps=2"], "train.eval_steps"),
        "best_metric for another task": (["data.eval_split=0.2", "train.eval_steps=1", "train.keep_best=true",
                                          "train.best_metric=accuracy"], "train.best_metric"),
        "empty YAML": ([str(empty)], "empty.yaml"),
        "duplicate YAML key": ([str(dup)], "dup.yaml:4"),
    }


NAMES = ["seed below 0", "seed above 2**32-1", "lr=inf", "lr=nan", "epochs overflow", "huge integer",
         "output_dir is a file", "output_dir under a file", "output_dir cannot be created", "loader_args keyword",
         "loader_args own key", "trainer not a factory", "eval_steps without eval data",
         "best_metric for another task", "empty YAML", "duplicate YAML key"]


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_one_line_naming_the_key_before_loading(name, overrides, tmp_path, capsys, no_model_loads,
                                                             error_logs):
    extra, key = _bad_inputs(tmp_path)[name]
    files = [e for e in extra if e.endswith(".yaml")]
    rest = [e for e in extra if not e.endswith(".yaml")]
    argv = ["train", *files, *overrides(tmp_path / "run", *rest)]
    if any(e.startswith("output_dir=") for e in rest):  # the case's output_dir replaces the fixture's
        argv = [a for a in argv if not a.startswith(f"output_dir={tmp_path / 'run'}")]
    started = time.perf_counter()
    code, out, err = run_cli(argv, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], err
    assert "Traceback" not in err + out
    assert not no_model_loads
    assert time.perf_counter() - started < 10, "refused within 10 s, long before any training"


def test_an_internal_error_is_a_short_report_and_the_traceback_goes_to_the_run_folder(
        overrides, tmp_path, capsys, monkeypatch, error_logs):
    import tunesmith.api.train_job as train_job

    def broken(*args, **kwargs):
        raise RuntimeError(f"boom while talking to https://me:{URL_PASSWORD}@tracker.example/api?x=1 "
                           f"with {HF_SHAPED}")

    monkeypatch.setattr(train_job, "_apply_adapter", broken)
    out_dir = tmp_path / "run"
    code, out, err = run_cli(["train", *overrides(out_dir)], capsys)
    assert code == 1
    lines = err.strip().splitlines()[-2:]  # progress bars come before the report
    assert lines[0].startswith("internal error: RuntimeError: boom") and "Traceback" not in err + out
    log = out_dir / "error.log"
    assert str(log) in lines[-1] and log.is_file()
    text = log.read_text()
    assert "Traceback" in text and "_apply_adapter" not in err and "broken" in text
    for secret in (URL_PASSWORD, HF_SHAPED):
        assert secret not in text and secret not in err + out
    assert MASK in text


def test_an_internal_error_before_the_run_folder_exists_goes_to_the_error_log_folder(
        tmp_path, capsys, monkeypatch, error_logs):
    import tunesmith.cli.commands as commands

    def broken(args):
        raise KeyError(f"token {HF_SHAPED}")

    monkeypatch.setattr(commands, "cmd_merge", broken)
    code, out, err = run_cli(["merge", str(tmp_path / "a"), str(tmp_path / "b")], capsys)
    assert code == 1 and "Traceback" not in err + out and HF_SHAPED not in err
    logs = list(error_logs.glob("*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    assert "Traceback" in logs[0].read_text() and HF_SHAPED not in logs[0].read_text()


def test_an_unreachable_tracking_server_is_refused_quickly_without_its_password(
        overrides, tmp_path, capsys, no_model_loads, error_logs):
    uri = f"http://alice:{URL_PASSWORD}@127.0.0.1:{closed_port()}"
    out_dir = tmp_path / "run"
    started = time.perf_counter()
    code, out, err = run_cli(["train", *overrides(out_dir, "train.log_to=[mlflow]",
                                                  f"train.mlflow_tracking_uri={uri}")], capsys)
    assert time.perf_counter() - started < 10
    assert code == 2 and "train.mlflow_tracking_uri" in err and "cannot be reached" in err
    assert URL_PASSWORD not in err + out and "alice:<masked>@" in err
    assert not no_model_loads
    written = [p for root in (out_dir, error_logs) if root.exists() for p in root.rglob("*") if p.is_file()]
    assert not [p for p in written if URL_PASSWORD.encode() in p.read_bytes()]


@pytest.mark.parametrize("text, secret", [
    ("http://user:S3cretPass@host:5000/x", "S3cretPass"),
    ("https://h/api?id=3&access_token=abc123def&b=2", "abc123def"),
    ("https://h/api?api_key=k-12345&sig=zz99", "k-12345"),
    ("s3://bucket/x?X-Amz-Signature=f00ba7", "f00ba7"),
    ("token hf_AbCdEfGhIjKlMnOpQrStUv12 in use", "hf_AbCdEfGhIjKlMnOpQrStUv12"),
    ("key sk-proj-Ab3dEfGh1jKlMn0pQrStUvWx-yZ", "sk-proj-Ab3dEfGh1jKlMn0pQrStUvWx-yZ"),
    ("OPENAI sk-AbCdEfGh1234567890abcdefghij", "sk-AbCdEfGh1234567890abcdefghij"),
    ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("aws AKIAABCDEFGHIJKLMNOP here", "AKIAABCDEFGHIJKLMNOP"),
    ("Authorization: Bearer abcdefghijklmnop0123", "abcdefghijklmnop0123"),
])
def test_credentials_are_masked_by_their_shape(text, secret):
    masked = mask_text(text, secrets=[])
    assert secret not in masked and MASK in masked


@pytest.mark.parametrize("text", ["train.lr=1e-4 key=value", "data.packing=pack tokenizer=x", "model=sk-learn",
                                  "data.train=sk-some-long-dataset-name-here-x", "hf_dataset_loader_v2",
                                  "https://huggingface.co/HuggingFaceTB/SmolLM2-135M?revision=main",
                                  "checkpoint-12 (step 12)"])
def test_ordinary_text_is_left_alone(text):
    assert mask_text(text, secrets=[]) == text


def test_log_records_and_their_tracebacks_are_masked_by_shape(caplog):
    from tunesmith.config.secrets import install_log_masking

    install_log_masking()
    log = logging.getLogger("some.library")
    with caplog.at_level(logging.INFO):
        try:
            raise ValueError(f"cannot reach https://u:{URL_PASSWORD}@h/x")
        except ValueError:
            log.exception("request with %s failed", HF_SHAPED)
    handler = logging.StreamHandler()
    formatted = "\n".join(handler.format(r) for r in caplog.records)
    assert "ValueError" in formatted and URL_PASSWORD not in formatted and HF_SHAPED not in formatted


def test_a_checkpoint_with_corrupted_bytes_is_set_aside_and_the_run_resumes_from_the_one_before(
        overrides, tmp_path, capsys):
    import json

    out_dir = tmp_path / "run"
    assert main(["train", *overrides(out_dir, "train.max_steps=3")]) == 0
    (out_dir / "run.json").unlink()  # as if killed after its last checkpoint
    weights = out_dir / "checkpoints" / "checkpoint-3" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[:8] = b"\xff" * 8  # the safetensors header length: unreadable, same size
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    code, out, err = run_cli(["train", *overrides(out_dir, "train.max_steps=4")], capsys)
    assert code == 0, err
    assert "checkpoint-3 is damaged (adapter_model.safetensors: its bytes changed" in err
    assert "Resuming from" in out and "checkpoint-2 (step 2)" in out and "Traceback" not in err + out
    assert (out_dir / "checkpoints" / ".damaged-checkpoint-3").is_dir()
    assert json.loads((out_dir / "run.json").read_text())["global_step"] == 4


def test_a_secret_given_on_the_command_line_is_masked_in_an_early_error(monkeypatch, capsys):
    from tunesmith.cli.error_boundary import report_error
    from tunesmith.errors import ConfigError

    secret = "Planted-cli-secret-4711"
    argv = ["train", f"train.callback_args={{notify: {{api_token: {secret}}}}}"]
    code = report_error(ConfigError(f"train.callback_args.notify: expected a mapping, got 'api_token={secret}'"), argv)
    err = capsys.readouterr().err
    assert code == 2 and secret not in err and MASK in err


def test_a_tracking_server_that_accepts_but_never_answers_is_refused_within_10_s(
        overrides, tmp_path, capsys, no_model_loads, error_logs):
    with socket.socket() as silent:  # the kernel accepts connections into the backlog; nobody answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://alice:{URL_PASSWORD}@127.0.0.1:{silent.getsockname()[1]}"
        started = time.perf_counter()
        code, out, err = run_cli(["train", *overrides(tmp_path / "run", "train.log_to=[mlflow]",
                                                      f"train.mlflow_tracking_uri={uri}")], capsys)
        took = time.perf_counter() - started
    assert code == 2 and "does not answer (no answer within 5 s)" in err, err
    assert took < 10 and URL_PASSWORD not in err + out and not no_model_loads


def test_what_a_command_prints_is_masked(monkeypatch, capsys):
    import sys

    import tunesmith.cli.commands as commands

    def chatty(args):
        print(f"Train data: hf://datasets/me/x?token={URL_PASSWORD} via {HF_SHAPED}")
        print(f"progress https://me:{URL_PASSWORD}@host/x", file=sys.stderr)
        return 0

    monkeypatch.setattr(commands, "cmd_merge", chatty)
    code, out, err = run_cli(["merge", "a", "b"], capsys)
    assert code == 0 and "Train data: hf://datasets/me/x?token=<masked> via <masked>" in out
    assert URL_PASSWORD not in out + err and HF_SHAPED not in out and "me:<masked>@host" in err


def test_a_refused_file_is_one_line_naming_it(monkeypatch, capsys, error_logs):
    import tunesmith.cli.commands as commands

    def refused(args):
        raise PermissionError(13, "Permission denied", "/data/private/rows.jsonl")

    monkeypatch.setattr(commands, "cmd_merge", refused)
    code, out, err = run_cli(["merge", "a", "b"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("error: /data/private/rows.jsonl: Permission denied (details in ")


@pytest.mark.parametrize("flags, named", [(["generate", "{run}", "hi", "--sample", "--seed", "-3"], "--seed"),
                                          (["generate", "{run}", "hi", "--sample", "--temperature", "nan"],
                                           "--temperature"),
                                          (["chat", "{run}", "--temperature", "inf"], "--temperature"),
                                          (["serve", "{run}", "--port", "{port}"], "--port")])
def test_generation_flags_and_a_taken_port_are_refused_before_loading(flags, named, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(FineTuner, "load", lambda *a, **k: pytest.fail("the run was loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        argv = [f.format(run=tmp_path, port=taken.getsockname()[1]) for f in flags]
        code, out, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {named}"), err
