"""The only place that builds ``transformers.TrainingArguments`` from a tunesmith config.

The fields that stand for one config key each come from the one mapping in
``tunesmith.config.training_arguments`` (which also reads a user's ``TrainingArguments`` back into
config keys); this module adds what depends on the run (its folder, held-out data, data loader,
distributed strategy) and what tunesmith always sets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.config.run_dir import RunDir
from tunesmith.config.schema import DistributedConfig, TrainConfig, TrainSection
from tunesmith.config.training_arguments import build_mapped
from tunesmith.config.validate import check_best_model_evaluation, interval
from tunesmith.errors import ConfigError

# train.optimizer -> transformers' optimizer name. "adamw" keeps transformers' default (fused
# AdamW on torch >= 2.8); the 8-bit and paged ones come from bitsandbytes (paged falls back to
# ordinary memory on a CPU).
OPTIMIZERS = {"adamw_8bit": "adamw_bnb_8bit", "paged_adamw": "paged_adamw_32bit",
              "paged_adamw_8bit": "paged_adamw_8bit", "sgd": "sgd"}


def effective_batch(t: TrainSection, processes: int = 1) -> int:
    """Sequences per optimizer step: batch_size x grad_accum x processes (e.g. 8 x 4 x 2 = 64)."""
    return t.batch_size * t.grad_accum * processes


def deepspeed_config(d: DistributedConfig) -> dict[str, Any]:
    """A ZeRO config for ``train.distributed.strategy=deepspeed``; "auto" values are filled in by
    transformers from the TrainingArguments, so batch size, clipping and precision agree."""
    if d.deepspeed_config:
        path = Path(d.deepspeed_config)
        if not path.is_file():
            raise ConfigError(f"train.distributed.deepspeed_config: {str(path)!r} does not exist")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"train.distributed.deepspeed_config: {path}:{err.lineno}: not valid JSON "
                              f"({err.msg})") from None
    zero: dict[str, Any] = {"stage": d.zero_stage, "overlap_comm": True, "contiguous_gradients": True}
    if d.zero_offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if d.zero_stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if d.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # save_model writes whole weights
    return {"zero_optimization": zero, "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
            "train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto",
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto"}


def fsdp_config(d: DistributedConfig) -> dict[str, Any]:
    """FSDP2 settings: wrap each transformer block (the model's ``_no_split_modules``), shard as asked."""
    return {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "reshard_after_forward": d.fsdp_sharding == "full_shard", "cpu_offload": d.fsdp_offload,
            "state_dict_type": "FULL_STATE_DICT"}


def _distributed_kwargs(d: DistributedConfig, device: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"ddp_timeout": d.timeout_s}
    from tunesmith.training.distributed import world_size

    if world_size() > 1:  # the backend of the process group, chosen by the run (auto: nccl on CUDA, else gloo)
        kwargs["ddp_backend"] = d.backend
    if d.strategy == "fsdp":
        kwargs.update(fsdp=True, fsdp_config=fsdp_config(d))
    elif d.strategy == "deepspeed":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError("train.distributed.strategy: 'deepspeed' needs DeepSpeed, which builds for your "
                              "CUDA toolkit: pip install deepspeed")
        kwargs["deepspeed"] = deepspeed_config(d)
    return kwargs


def _checkpoint_kwargs(t: TrainSection, has_eval: bool) -> dict[str, Any]:
    """Evaluation, checkpoints, the best model and early stopping: the combinations transformers needs."""
    check_best_model_evaluation(t, has_eval)
    evaluate = interval(t.eval_strategy, t.eval_steps) if has_eval else "no"
    save, save_steps = interval(t.save_strategy, t.save_steps), t.save_steps
    if t.keep_best:
        # The best checkpoint can only be one that was saved right after an evaluation (the run
        # makes an auto save_strategy follow the evaluation).
        if save != evaluate or (save == "steps" and t.save_steps % t.eval_steps):
            raise ConfigError(f"train.keep_best: checkpoints must be saved where the model is evaluated; "
                              f"train.save_strategy={save!r} (save_steps={t.save_steps}) does not match "
                              f"train.eval_strategy={evaluate!r} (eval_steps={t.eval_steps}); set "
                              "train.save_strategy=auto")
    out: dict[str, Any] = {
        "eval_strategy": evaluate, "eval_steps": t.eval_steps if evaluate == "steps" else None,
        "save_strategy": save, "save_steps": save_steps if save == "steps" else 500,
        "load_best_model_at_end": t.keep_best,
    }
    if t.keep_best or t.early_stopping_patience:
        out["metric_for_best_model"] = t.best_metric  # transformers reads "loss" as eval_loss, lower is better
    return out


def training_args_kwargs(cfg: TrainConfig, run_dir: Path, device: str, precision: str, has_eval: bool,
                         loader: Any = None) -> dict[str, Any]:
    """The keyword arguments of ``TrainingArguments`` for a config (see ``build_training_args``)."""
    t = cfg.train
    # The fields of the one mapping (config/training_arguments.py), with the device and precision
    # this run resolved; then what tunesmith always sets.
    kwargs = build_mapped(cfg, {"model.device": device, "train.precision": precision})
    kwargs.update(
        output_dir=str(RunDir(run_dir).checkpoints),
        per_device_eval_batch_size=t.batch_size,
        data_seed=t.seed,
        logging_first_step=True,
        report_to="none",  # TensorBoard / MLflow go through tunesmith's callbacks (train.log_to)
        disable_tqdm=True,  # tunesmith's own progress bar shows loss, tokens/s and ETA
        include_num_input_tokens_seen="non_padding",
        # A NaN / inf loss is still kept out of the logged loss, by the trainer on the device
        # (guarded_trainer.training_step); transformers' check reads the loss back every micro-batch.
        logging_nan_inf_filter=False,
        remove_unused_columns=False,
        # Batches of similar lengths pad little; transformers' own length-grouped sampler does it.
        train_sampling_strategy="group_by_length" if cfg.data.packing == "group_by_length" else "random",
        dataloader_pin_memory=loader.pin_memory if loader else device.startswith("cuda"),
        dataloader_num_workers=loader.num_workers if loader else 0,
        dataloader_persistent_workers=bool(loader and loader.persistent_workers),
        dataloader_prefetch_factor=loader.prefetch_factor if loader else None,
    )
    if cfg.data.streaming:
        # The stream is read in the training process (its position goes into each checkpoint): no
        # reader workers. Under several processes each reads the same stream and keeps its own share
        # of every global batch (accelerate's IterableDatasetShard), so the position saved by rank 0 is
        # every rank's; batches are not gathered on one process and cut along the batch dimension,
        # which padding-free rows (a whole batch in one row) cannot be.
        kwargs.update(dataloader_num_workers=0, dataloader_persistent_workers=False, dataloader_prefetch_factor=None,
                      accelerator_config={"dispatch_batches": False})
    if kwargs["dataloader_pin_memory"]:
        # Batches in pinned memory go to the GPU without the host waiting for the copy (accelerate
        # waits by default, which stalls the host once per tensor of every batch).
        kwargs["accelerator_config"] = {**kwargs.get("accelerator_config", {}), "non_blocking": True}
    if t.optimizer != "adamw":
        kwargs["optim"] = OPTIMIZERS[t.optimizer]
    if t.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input gradients, so it works under a frozen base
        # (LoRA) as well as with full fine-tuning.
        kwargs.update(activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": False})
    kwargs.update(_checkpoint_kwargs(t, has_eval))
    kwargs.update(_distributed_kwargs(t.distributed, device))
    return kwargs


def build_training_args(cfg: TrainConfig, run_dir: Path, device: str, precision: str, has_eval: bool,
                        loader: Any = None) -> Any:
    """Map ``train.*`` keys onto TrainingArguments. Checkpoints go to ``run_dir/checkpoints``.

    ``loader`` carries the device-aware DataLoader settings (workers, pinned memory, prefetch) that
    the data layer chose for ``device``; without it the loader runs in the main process.
    """
    from transformers import TrainingArguments

    return TrainingArguments(**training_args_kwargs(cfg, run_dir, device, precision, has_eval, loader))
