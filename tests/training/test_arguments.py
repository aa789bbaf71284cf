"""Config -> TrainingArguments: every training option lands on the right argument, and bad values or
combinations fail at config time with the key and what is allowed."""

import json
from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.config.schema import DistributedConfig
from tunesmith.errors import ConfigError
from tunesmith.api.choices.training import build_training_args, training_args_kwargs
from tunesmith.training.arguments import deepspeed_config, effective_batch


def kwargs(*overrides, has_eval=True, device="cpu"):
    return training_args_kwargs(load_config(overrides=list(overrides)), Path("/tmp/run"), device, "fp32", has_eval)


def test_defaults_keep_the_default_job():
    k = kwargs()
    assert (k["max_steps"], k["per_device_train_batch_size"], k["learning_rate"]) == (150, 8, 1e-3)
    assert k["lr_scheduler_type"] == "cosine" and k["warmup_steps"] == 0.05
    assert "optim" not in k  # transformers' default AdamW
    assert k["max_grad_norm"] == 1.0 and "activation_checkpointing" not in k
    assert k["eval_strategy"] == "no" and k["save_strategy"] == "no" and k["save_total_limit"] is None
    assert k["load_best_model_at_end"] is False and "fsdp" not in k and "deepspeed" not in k


def test_gpu_batches_copy_without_waiting_and_the_logged_loss_check_reads_nothing_back():
    """On CUDA, pinned batches go to the GPU with non-blocking copies (accelerate waits by default);
    transformers' NaN check of the logged loss is off on every device (the trainer filters on the
    device instead, ``guarded_trainer.training_step``)."""
    from tunesmith.data.loading import loader_settings

    cfg = load_config()
    gpu = training_args_kwargs(cfg, Path("/tmp/run"), "cuda", "bf16", False, loader_settings("cuda"))
    assert gpu["dataloader_pin_memory"] and gpu["accelerator_config"] == {"non_blocking": True}
    streaming = training_args_kwargs(load_config(overrides=["data.streaming=true"]), Path("/tmp/run"), "cuda", "bf16",
                                     False, loader_settings("cuda"))
    assert streaming["accelerator_config"] == {"dispatch_batches": False, "non_blocking": True}
    cpu = training_args_kwargs(cfg, Path("/tmp/run"), "cpu", "bf16", False, loader_settings("cpu"))
    assert "accelerator_config" not in cpu and not cpu["dataloader_pin_memory"]
    assert gpu["logging_nan_inf_filter"] is False and cpu["logging_nan_inf_filter"] is False


@pytest.mark.parametrize("optimizer, expected", [("adamw_8bit", "adamw_bnb_8bit"), ("paged_adamw", "paged_adamw_32bit"),
                                                 ("paged_adamw_8bit", "paged_adamw_8bit"), ("sgd", "sgd")])
def test_optimizers(optimizer, expected):
    assert kwargs(f"train.optimizer={optimizer}")["optim"] == expected


@pytest.mark.parametrize("scheduler", ["linear", "cosine", "constant", "constant_with_warmup"])
def test_schedulers_reach_transformers(tmp_path, scheduler):
    args = build_training_args(load_config(overrides=[f"train.scheduler={scheduler}", "train.warmup_ratio=0.1"]),
                               tmp_path, "cpu", "fp32", False)
    assert args.lr_scheduler_type.value == scheduler and args.warmup_steps == 0.1


def test_options_map_one_to_one():
    k = kwargs("train.epochs=3", "train.max_steps=-1", "train.grad_accum=4", "train.weight_decay=0.01",
               "train.max_grad_norm=0.5", "train.gradient_checkpointing=true", "train.seed=7", "train.eval_steps=5",
               "train.save_steps=10", "train.save_limit=2")
    assert (k["num_train_epochs"], k["max_steps"], k["gradient_accumulation_steps"]) == (3, -1, 4)
    assert (k["weight_decay"], k["max_grad_norm"], k["seed"], k["data_seed"]) == (0.01, 0.5, 7, 7)
    assert k["activation_checkpointing"] is True
    assert (k["eval_strategy"], k["eval_steps"], k["save_strategy"], k["save_steps"]) == ("steps", 5, "steps", 10)
    assert k["save_total_limit"] == 2


def test_per_epoch_evaluation_and_saving():
    k = kwargs("train.eval_strategy=epoch", "train.save_strategy=epoch")
    assert (k["eval_strategy"], k["eval_steps"], k["save_strategy"]) == ("epoch", None, "epoch")
    assert kwargs("train.eval_steps=5", has_eval=False)["eval_strategy"] == "no"  # nothing to evaluate on


def test_keep_best_saves_where_it_evaluates():
    k = kwargs("train.eval_steps=4", "train.keep_best=true", "train.best_metric=loss")
    assert (k["save_strategy"], k["save_steps"], k["load_best_model_at_end"]) == ("steps", 4, True)
    assert k["metric_for_best_model"] == "loss"
    with pytest.raises(ConfigError, match="train.keep_best: checkpoints must be saved where"):
        kwargs("train.eval_steps=4", "train.keep_best=true", "train.save_strategy=steps", "train.save_steps=6")
    with pytest.raises(ConfigError, match="train.keep_best: needs an eval set"):
        kwargs("train.eval_steps=4", "train.keep_best=true", has_eval=False)


@pytest.mark.parametrize("overrides, message", [
    (["train.keep_best=true"], "train.keep_best: needs evaluation during training"),
    (["train.early_stopping_patience=2"], "train.early_stopping_patience: needs evaluation"),
    (["train.eval_strategy=steps"], "train.eval_steps: 0 is not allowed"),
    (["train.save_strategy=steps"], "train.save_steps: 0 is not allowed"),
    (["train.max_grad_norm=-1"], "train.max_grad_norm"),
    (["train.distributed.zero_stage=4"], "train.distributed.zero_stage: 4 is not allowed; expected 1, 2 or 3"),
    (["train.unlearning.beta=0"], "train.unlearning.beta"),
    (["train.optimizer=adam8"], "train.optimizer: 'adam8' is not allowed"),
    (["train.log_to=[tensorboard,wandb]"], r"train.log_to\[1\]: 'wandb' is not allowed"),
    (["train.log_to=[mlflow,mlflow]"], "listed twice"),
    (["train.distributed.strategy=zero"], "Allowed: ddp, fsdp, deepspeed"),
    (["+train.callback_args={timer: {every: 2}}"], "train.callback_args.timer: no callback named"),
])
def test_bad_values_fail_at_config_time(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_effective_batch_counts_processes():
    cfg = load_config(overrides=["train.batch_size=4", "train.grad_accum=8"])
    assert effective_batch(cfg.train) == 32 and effective_batch(cfg.train, 2) == 64


def test_fsdp_settings():
    k = kwargs("train.distributed.strategy=fsdp", "train.distributed.fsdp_sharding=shard_grad_op",
               "train.distributed.fsdp_offload=true")
    assert k["fsdp"] is True
    assert k["fsdp_config"]["reshard_after_forward"] is False and k["fsdp_config"]["cpu_offload"] is True
    assert kwargs("train.distributed.strategy=fsdp")["fsdp_config"]["reshard_after_forward"] is True


def test_deepspeed_zero_config(tmp_path):
    zero3 = deepspeed_config(DistributedConfig(strategy="deepspeed", zero_stage=3, zero_offload=True))
    assert zero3["zero_optimization"]["stage"] == 3
    assert zero3["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert zero3["train_micro_batch_size_per_gpu"] == "auto"  # filled in from the TrainingArguments
    own = tmp_path / "ds.json"
    own.write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    assert deepspeed_config(DistributedConfig(deepspeed_config=str(own))) == {"zero_optimization": {"stage": 1}}
    own.write_text("{not json")
    with pytest.raises(ConfigError, match="ds.json:1: not valid JSON"):
        deepspeed_config(DistributedConfig(deepspeed_config=str(own)))


def test_deepspeed_without_the_package_says_how_to_install():
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    with pytest.raises(ConfigError, match="pip install deepspeed"):
        kwargs("train.distributed.strategy=deepspeed")


def test_examples_load(tmp_path):
    root = Path(__file__).resolve().parents[2] / "examples"
    files = sorted(root.glob("*.yaml"))
    assert files, root
    for path in files:
        cfg = load_config(path)
        if cfg.train.distributed.strategy == "deepspeed":  # the package itself is optional
            assert deepspeed_config(cfg.train.distributed)["zero_optimization"]["stage"] == cfg.train.distributed.zero_stage
        else:
            training_args_kwargs(cfg, tmp_path, "cuda", "bf16", True)


def test_trainer_keys_from_the_design_documents_reach_training_arguments():
    k = kwargs("train.warmup_steps=5", "train.save_only_model=true", "train.bf16_full_eval=true",
               "train.save_steps=10", "train.save_limit=2")
    assert (k["warmup_steps"], k["save_only_model"], k["bf16_full_eval"]) == (5, True, True)
    assert (k["save_strategy"], k["save_steps"], k["save_total_limit"]) == ("steps", 10, 2)
    assert kwargs()["warmup_steps"] == 0.05  # without warmup_steps: the ratio


def test_logging_dir_turns_tensorboard_on(tmp_path):
    cfg = load_config(overrides=[f"train.logging_dir={tmp_path / 'tb'}"])
    assert cfg.train.log_to == ["tensorboard"]
    from tunesmith.training.callbacks import build_callbacks
    from tunesmith.training.loggers import TensorBoardLogger

    (logger,) = [c for c in build_callbacks(cfg.train, tmp_path / "run", {}) if isinstance(c, TensorBoardLogger)]
    assert logger.log_dir == tmp_path / "tb"
