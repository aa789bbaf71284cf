import pytest

from tunesmith.config import load_config, read_saved_config, save_config
from tunesmith.errors import ConfigError


def test_defaults_compose_from_packaged_groups():
    cfg = load_config()
    assert cfg.model.name_or_path == "smollm2-135m-instruct"
    assert cfg.model.task == "auto"  # inferred from the model, so model.name_or_path alone can switch it
    assert cfg.data.train == "arith" and cfg.data.loss_on == "assistant"
    assert cfg.peft.method == "lora" and cfg.peft.target_modules == ["all-linear"]
    assert cfg.model.trust_remote_code is False
    assert cfg.output_dir is None


def test_overrides_convert_types_and_select_groups():
    cfg = load_config(overrides=["train.lr=5e-4", "train.batch_size=2", "peft=dora",
                                 "peft.target_modules=[q_proj,v_proj]", "model.trust_remote_code=true"])
    assert cfg.train.lr == pytest.approx(5e-4)
    assert cfg.train.batch_size == 2
    assert cfg.peft.method == "dora"
    assert cfg.peft.target_modules == ["q_proj", "v_proj"]
    assert cfg.model.trust_remote_code is True


def test_group_value_that_is_a_path_means_name_or_path(tmp_path):
    cfg = load_config(overrides=[f"model={tmp_path}", "data=rows.jsonl"])
    assert cfg.model.name_or_path == str(tmp_path)
    assert cfg.data.train == "rows.jsonl"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.lerning_rate=1", ["train.lerning_rate", "unknown key", "Did you mean 'train.lr'"]),
        ("lr=3", ["lr", "Did you mean 'train.lr'"]),
        ("train.scheduler=cosin", ["train.scheduler", "'cosin'", "Did you mean 'cosine'", "linear"]),
        ("data.loss_on=assistants", ["data.loss_on", "Allowed: all, assistant, last_assistant"]),
        ("train.batch_size=abc", ["train.batch_size", "expected an integer", "'abc'"]),
        ("train.lr=-1", ["train.lr", "-1.0", "positive"]),
        ("peft=lorra", ["peft", "'lorra'", "Did you mean 'lora'"]),
        ("model=smollm2-135m", ["model", "Did you mean 'smollm2-135m-instruct'"]),
        ("model.device=tpu", ["model.device", "'tpu'", "cuda"]),
        ("notakey", ["expected key=value"]),
    ],
)
def test_bad_overrides_name_key_value_and_allowed(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    for part in expected:
        assert part in str(err.value)


def test_yaml_file_then_overrides_win(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("peft: full\ntrain:\n  lr: 1.0e-5\n  batch_size: 3\ndata:\n  max_length: 128\n")
    cfg = load_config(path, ["train.batch_size=5"])
    assert cfg.peft.method == "full"
    assert cfg.train.lr == pytest.approx(1e-5)
    assert cfg.train.batch_size == 5  # the command line beats the file
    assert cfg.data.max_length == 128


def test_yaml_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: 1\n   batch_size: [\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:3" in str(err.value)
    path.write_text("train:\n  epoch: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "train.epoch" in str(err.value) and "Did you mean 'train.epochs'" in str(err.value)
    assert str(path) in str(err.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("nope/missing.yaml")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(overrides=["train.lr=3e-4", "peft.r=8", "data.max_samples=10"])
    save_config(cfg, tmp_path / "config.yaml")
    assert read_saved_config(tmp_path / "config.yaml") == cfg


def test_comma_in_an_override_is_explained():
    with pytest.raises(ConfigError, match="comma"):
        load_config(overrides=["data.train=a.jsonl,b.jsonl"])
    assert load_config(overrides=["data.train='a,b.jsonl'"]).data.train == "a,b.jsonl"


# --- the classifier recipe: a classification job that names no train group ----------------

@pytest.mark.parametrize("overrides, method, group_lr, epochs", [
    (["model=minilm-l6", "data=paraphrase"], "full", 1e-4, 4.0),
    (["model=minilm-l6", "data=sentiment"], "full", 1e-4, 4.0),
    (["model=minilm-l6", "data=paraphrase", "peft=lora"], "lora", 1e-3, 3.0),
    (["model=minilm-l6", "data=paraphrase", "peft.method=dora"], "dora", 1e-3, 3.0),
    (["model=minilm-l6", "data=paraphrase", "peft.target_modules=[query,value]"], "lora", 1e-3, 3.0),
    (["model.name_or_path=minilm-l6", "model.task=sequence_classification", "data.train=rows.jsonl"],
     "full", 1e-4, 4.0),
])
def test_classification_jobs_get_the_classifier_recipe(overrides, method, group_lr, epochs):
    cfg = load_config(overrides=overrides)
    assert (cfg.peft.method, cfg.train.lr, cfg.train.epochs, cfg.train.max_steps) == (method, group_lr, epochs, -1)


@pytest.mark.parametrize("overrides, method, max_steps", [
    (["model=minilm-l6", "data=paraphrase", "train=quick"], "lora", 5),  # a named train group wins
    (["model=minilm-l6", "data=sentiment", "train=classify"], "lora", -1),
    ([], "lora", 150),  # the causal-LM default job is untouched
    (["data=arith", "peft=full"], "full", 150),
])
def test_other_jobs_keep_their_groups(overrides, method, max_steps):
    cfg = load_config(overrides=overrides)
    assert (cfg.peft.method, cfg.train.max_steps) == (method, max_steps)


def test_classifier_recipe_keeps_a_users_values(tmp_path):
    cfg = load_config(overrides=["model=minilm-l6", "data=paraphrase", "train.lr=3e-5", "train.epochs=2"])
    assert (cfg.peft.method, cfg.train.lr, cfg.train.epochs) == ("full", 3e-5, 2.0)
    file = tmp_path / "job.yaml"
    file.write_text("model: minilm-l6\ndata: paraphrase\npeft:\n  method: lora\n")
    cfg = load_config(file)
    assert (cfg.peft.method, cfg.train.lr, cfg.train.epochs) == ("lora", 1e-3, 3.0)


def test_on_and_off_keep_their_meaning_in_yaml_and_overrides(tmp_path):
    # YAML 1.1 reads a bare on / off as a boolean, and hydra reads true / false as one
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  memory_trim: off\n  memory_probe: on\n  compile: off\n")
    cfg = load_config(str(path), overrides=["model.hub_kernels=false", "train.compile=true"])
    assert (cfg.train.memory_trim, cfg.train.memory_probe, cfg.train.compile) == ("off", "on", "on")
    assert cfg.model.hub_kernels == "off"
    with pytest.raises(ConfigError, match="data.packing: True is not allowed"):  # no on / off among its values
        load_config(overrides=["data.packing=true"])
