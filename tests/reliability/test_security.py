"""Security defaults: no remote code, no pickle loading, confined paths, masked secrets."""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path

import pytest

import tunesmith
from tunesmith.config import TrainConfig, load_config, read_saved_config, save_config
from tunesmith.config.paths import check_confined, looks_like_path
from tunesmith.config.secrets import (
    MASK,
    config_secrets,
    env_secrets,
    install_log_masking,
    is_secret_env,
    is_secret_key,
    mask_config,
    mask_text,
)
from tunesmith.errors import ConfigError

SRC = Path(tunesmith.__file__).parent


def _calls(name: str):
    """(file, call node) for every call of ``<something>.name(...)`` or ``name(...)`` in the package."""
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called == name:
                    yield path, node


# --- remote code and pickles ---------------------------------------------------------------------


def test_remote_code_is_off_by_default_and_never_forced_on():
    assert TrainConfig().model.trust_remote_code is False
    forced = [f"{path.relative_to(SRC)}:{node.lineno}" for path in SRC.rglob("*.py")
              for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
              if isinstance(node, ast.keyword) and node.arg == "trust_remote_code"
              and isinstance(node.value, ast.Constant) and node.value.value is True]
    assert not forced, f"trust_remote_code=True hard-coded at {forced}"


def test_every_torch_load_is_weights_only():
    unsafe = []
    for path, node in _calls("load"):
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "torch":
            keywords = {k.arg: k.value for k in node.keywords}
            value = keywords.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                unsafe.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not unsafe, f"torch.load without weights_only=True at {unsafe}"
    assert not list(_calls("loads")) or all(  # no pickle.loads anywhere either
        not (isinstance(n.func, ast.Attribute) and getattr(n.func.value, "id", "") == "pickle") for _, n in _calls("loads"))


def test_resume_reads_trainer_state_without_pickle():
    """transformers' own resume path loads optimizer, scheduler and RNG with weights_only=True."""
    import inspect

    from transformers import Trainer

    for method in (Trainer._load_rng_state, Trainer._load_optimizer_and_scheduler):
        source = inspect.getsource(method)
        loads = source.count("torch.load(")
        assert loads and source.count("weights_only=True") >= loads, method.__name__


# --- path confinement ----------------------------------------------------------------------------


@pytest.fixture
def foreign(tmp_path, monkeypatch):
    """A working directory and a config folder outside it, with a dataset next to the config."""
    work, elsewhere = tmp_path / "work", tmp_path / "downloads" / "cfg"
    work.mkdir()
    elsewhere.mkdir(parents=True)
    (elsewhere / "rows.jsonl").write_text('{"text": "a"}\n', encoding="utf-8")
    (tmp_path / "private.jsonl").write_text('{"text": "secret"}\n', encoding="utf-8")
    monkeypatch.chdir(work)
    return tmp_path, elsewhere


def _write(folder: Path, text: str) -> Path:
    path = folder / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("key, text", [
    ("data.train", "data:\n  train: {private}\n"),
    ("data.train", "data:\n  train: ../../private.jsonl\n"),
    ("data.eval", "data:\n  eval: {root}/*.jsonl\n"),
    ("data.mix[0].train", "data:\n  mix: [{{train: {private}, weight: 1}}]\n"),
    ("output_dir", "output_dir: {root}/work/../../escaped\n"),
    ("output_dir", "output_dir: ~/somewhere\n"),
    ("train.mlflow_tracking_uri", "train:\n  mlflow_tracking_uri: file://{root}/mlruns\n"),
])
def test_foreign_config_cannot_name_paths_outside_its_folder(foreign, key, text):
    root, elsewhere = foreign
    path = _write(elsewhere, text.format(private=root / "private.jsonl", root=root))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{key}:") and "outside the config file's folder" in message
    assert "--allow-outside-paths" in message
    load_config(path, ["allow_outside_paths=true"])  # the documented switch lets it through


def test_foreign_config_may_use_its_folder_and_the_working_directory(foreign):
    root, elsewhere = foreign
    (root / "work" / "mine.jsonl").write_text('{"text": "b"}\n', encoding="utf-8")
    path = _write(elsewhere, f"data:\n  train: {elsewhere / 'rows.jsonl'}\n  eval: mine.jsonl\n"
                             f"output_dir: runs/x\n")
    cfg = load_config(path)
    assert cfg.data.train.endswith("rows.jsonl") and cfg.output_dir == "runs/x"
    assert load_config(_write(elsewhere, "data: arith\nmodel: org/some-hub-model\n")).data.train == "arith"


def test_command_line_paths_are_the_users_own(foreign):
    root, elsewhere = foreign
    path = _write(elsewhere, f"data:\n  train: {root / 'private.jsonl'}\n")
    cfg = load_config(path, [f"data.train={root / 'private.jsonl'}", f"output_dir={root / 'out'}"])
    assert cfg.output_dir == str(root / "out")


def test_symlink_out_of_the_folder_is_outside(foreign):
    root, elsewhere = foreign
    (elsewhere / "link.jsonl").symlink_to(root / "private.jsonl")
    with pytest.raises(ConfigError, match="data.train"):
        load_config(_write(elsewhere, "data:\n  train: " + str(elsewhere / "link.jsonl") + "\n"))


def test_a_config_file_cannot_lift_its_own_confinement(foreign):
    _, elsewhere = foreign
    with pytest.raises(ConfigError, match="allow_outside_paths.*command line"):
        load_config(_write(elsewhere, "allow_outside_paths: true\n"))


def test_configs_in_the_working_directory_are_not_confined(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    outside = tmp_path.parent / "shared-data.jsonl"
    path = _write(tmp_path / "configs", f"data:\n  train: {outside}\n")
    assert load_config(path).data.train == str(outside)  # e.g. tunesmith train runs/x/config.yaml


def test_check_confined_directly_and_what_counts_as_a_path(tmp_path):
    cfg = TrainConfig()
    cfg.output_dir = "/etc/tunesmith-run"
    with pytest.raises(ConfigError, match="output_dir"):
        check_confined(cfg, tmp_path / "cfg" / "c.yaml", cli_keys=set(), cwd=tmp_path / "work")
    check_confined(cfg, tmp_path / "cfg" / "c.yaml", cli_keys={"output_dir"}, cwd=tmp_path / "work")
    assert looks_like_path("./d.jsonl") and looks_like_path("data/*.csv") and looks_like_path("/abs")
    assert not looks_like_path("arith") and not looks_like_path("my_pkg.data:rows")
    assert not looks_like_path("org/hub-dataset")


def test_cli_flag_sets_the_switch(foreign, capsys):
    from tunesmith.cli.main import main

    root, elsewhere = foreign
    path = _write(elsewhere, f"data:\n  train: {root / 'private.jsonl'}\n")
    assert main(["train", str(path)]) == 2
    assert "outside the config file's folder" in capsys.readouterr().err
    assert load_config(path, ["allow_outside_paths=true"]).allow_outside_paths


# --- secrets -------------------------------------------------------------------------------------


def test_secret_keys_and_environment_names():
    assert all(map(is_secret_key, ["hub_token", "API_KEY", "client_secret", "token", "db_password"]))
    assert not any(map(is_secret_key, ["tokenizer", "keys", "max_tokens", "monkey", 3]))
    assert all(map(is_secret_env, ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "MLFLOW_TRACKING_PASSWORD",
                                   "AWS_SECRET_ACCESS_KEY"]))
    assert not any(map(is_secret_env, ["TOKENIZERS_PARALLELISM", "HOME", "PATH", "KEYBOARD"]))
    assert env_secrets({"HF_TOKEN": "hf_abcdefghij", "MY_KEY": "1", "HOME": "/root"}) == ["hf_abcdefghij"]


def test_mask_config_masks_secret_keys_at_any_depth_and_secret_values_anywhere():
    tree = {"train": {"callback_args": {"notify": {"api_token": "tok-123456789", "every": 5}},
                      "mlflow_tracking_uri": "https://me:pw-98765@mlflow.example.org"},
            "eval": {"inference_handler_args": {"note": "uses tok-123456789 inside"}},
            "data": {"columns": {"question": "q"}, "dataset_args": {"keys": ["a"], "hub_key": None}}}
    masked = mask_config(tree)
    assert masked["train"]["callback_args"]["notify"] == {"api_token": MASK, "every": 5}
    assert masked["train"]["mlflow_tracking_uri"] == f"https://me:{MASK}@mlflow.example.org"
    assert masked["eval"]["inference_handler_args"]["note"] == f"uses {MASK} inside"
    assert masked["data"] == tree["data"]  # nothing secret there; None stays None
    assert config_secrets(tree) == ["tok-123456789"]
    assert "tok-123456789" not in mask_text("later log line with tok-123456789")  # remembered


def test_saved_config_is_masked_and_still_reads_back(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_planted_env_token_0001")
    cfg = load_config(overrides=["train.callback_args={}", "eval.inference_handler_args={my_api_key: k-abcdefgh}",
                                 "model.loader_args={note: hf_planted_env_token_0001}"])
    save_config(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text(encoding="utf-8")
    assert "k-abcdefgh" not in text and "hf_planted_env_token_0001" not in text and text.count(MASK) == 2
    back = read_saved_config(tmp_path / "config.yaml")
    assert back.eval.inference_handler_args == {"my_api_key": MASK}


def test_log_records_are_masked(monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", "hf_planted_log_token_0002")
    install_log_masking()
    install_log_masking()  # idempotent
    logger = logging.getLogger("transformers.some.module")
    with caplog.at_level(logging.WARNING):
        logger.warning("token is %s", os.environ["HF_TOKEN"])
        logging.getLogger("tunesmith").warning("again hf_planted_log_token_0002")
    assert "hf_planted_log_token_0002" not in caplog.text and caplog.text.count(MASK) == 2


def test_cli_errors_are_masked(monkeypatch, capsys, tmp_path):
    from tunesmith.cli.main import main

    monkeypatch.setenv("MY_SERVICE_TOKEN", "svc_planted_token_0003")
    assert main(["train", "train.lr=svc_planted_token_0003"]) == 2
    err = capsys.readouterr().err
    assert "train.lr" in err and "svc_planted_token_0003" not in err and MASK in err


def test_short_secret_values_do_not_garble_other_fields():
    tree = {"data": {"packing": "none"}, "train": {"callback_args": {"x": {"api_key": "none"}}}}
    assert mask_config(tree) == {"data": {"packing": "none"}, "train": {"callback_args": {"x": {"api_key": MASK}}}}
    assert mask_text("packing none") == "packing none"
