"""The steps of one training run, in order: prepare the run directory, data and model; measure the
base model; apply the adapter; train; save; measure the tuned model; write the run record.

Each step is a small function so that a reader can follow the run from ``run_training`` alone.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from tunesmith.api.held_out import before_after_metric, held_out_metrics, unlearning_metrics
from tunesmith.api.results import TrainResult
from tunesmith.config import save_config
from tunesmith.config.lengths import describe_length


def run_training(tuner: Any) -> TrainResult:
    """Run the whole job described by ``tuner.config``; ``tuner.model`` is the tuned model afterwards.

    An exception leaving the run carries the run directory (``err.tunesmith_run_dir``) once it
    exists, so the command line writes the traceback there (``cli/error_boundary.py``).
    """
    where: dict[str, Path] = {}
    try:
        return _run_training(tuner, where)
    except BaseException as err:
        if "run_dir" in where and getattr(err, "tunesmith_run_dir", None) is None:
            try:
                err.tunesmith_run_dir = where["run_dir"]  # type: ignore[attr-defined]
            except AttributeError:  # an exception type with __slots__
                pass
        raise


def _run_training(tuner: Any, where: dict[str, Path]) -> TrainResult:
    from transformers import set_seed

    from tunesmith.api.components import check_metric_fits_task
    from tunesmith.evaluation.metrics import format_score
    from tunesmith.inference.runs import CONFIG_FILE, prepare_run_dir
    from tunesmith.reporting.resources import resource_summary
    from tunesmith.training import distributed as dist
    from tunesmith.training.callbacks import check_callbacks
    from tunesmith.training.guarded_run import nan_skipped_steps, train_with_guards
    from tunesmith.training.attention_choice import choose_attention
    from tunesmith.training.signals import stop_at_once_on_signals
    from tunesmith.training.host_memory import (apply_memory_trim, limit_kernel_caches, memory_record,
                                                plan_memory_trim)
    from tunesmith.training.speed import apply_speed_settings, speed_context

    cfg = tuner.config
    _mask_secrets_in_logs(cfg)
    check_callbacks(cfg.train)
    check_metric_fits_task(cfg)  # train.best_metric against the model's task, before any folder is made
    if "mlflow" in cfg.train.log_to:
        from tunesmith.training.loggers import check_tracking_server

        check_tracking_server(cfg.train.mlflow_tracking_uri)  # bounded: never minutes of retries
    kernel_note = limit_kernel_caches(cfg.train.cpu_kernel_cache)  # before the first matrix multiply
    device, precision = tuner._runtime()
    device = dist.process_device(device)  # cuda:LOCAL_RANK under torchrun / accelerate launch
    dist.init_distributed(device, cfg.train.distributed.backend, cfg.train.distributed.timeout_s)
    dist.quiet_replica()  # only rank 0 prints
    run_dir, checkpoint = dist.share_from_main(lambda: _prepare(cfg, prepare_run_dir, CONFIG_FILE))
    where["run_dir"] = run_dir
    set_seed(cfg.train.seed)
    print(f"Run directory: {run_dir}\nDevice: {device}, precision: {precision}"
          + (f", {dist.world_size()} processes" if dist.world_size() > 1 else "")
          + f"\nLength: {describe_length(cfg.train.epochs, cfg.train.max_steps)}", flush=True)

    with dist.main_process_first():  # rank 0 fills the data cache and converts a GGUF file once
        task, bundle = _load_data(tuner)
        retain = _load_retain(tuner, task)
        _load_model(tuner, task, device, precision, bundle.label_names)

    # Held-out measurements run on rank 0 only, and not on sharded (fsdp / deepspeed) models.
    measure = dist.is_main_process() and cfg.train.distributed.strategy == "ddp"
    metric = before_after_metric(tuner, task, bundle) if measure and retain is None else None
    before = after = None
    with stop_at_once_on_signals("measuring the base model", "nothing was trained yet"):
        if measure and retain is not None:
            before = unlearning_metrics(tuner, bundle, retain, device, precision, "Measuring base model")
            print(f"Base model: {_losses(before)}", flush=True)
        if metric:
            before = held_out_metrics(tuner, metric, "Evaluating base model", device, precision, task, bundle)
            print(f"Base model: {format_score(before)}", flush=True)

    trainable, total = _apply_adapter(tuner, task)
    packing = _packing(cfg, task, tuner.model)
    attention = choose_attention(cfg.train.attention, device, precision, packing in ("padding_free", "pack"),
                                 tuner.model, cfg.data.max_length)
    print(f"Attention: {attention.kernel} ({attention.reason})", flush=True)
    trainer = _build_trainer(tuner, task, bundle, run_dir, device, precision, packing, attention, retain)
    for note in apply_speed_settings(trainer, cfg.train):  # train.logits, train.logits_chunk
        print(note, flush=True)
    trim = plan_memory_trim(cfg.train.memory_trim, device)
    print(trim.describe() + (f"\n{kernel_note}" if kernel_note else ""), flush=True)
    memory = {**apply_memory_trim(trainer, trim), "cpu_kernel_cache": cfg.train.cpu_kernel_cache}
    start = time.perf_counter()
    with speed_context(tuner.model, cfg, precision, device, attention):  # train.frozen_weights, train.attention
        output = train_with_guards(trainer, cfg, checkpoint)  # atomic checkpoints, resume, NaN and signal guards
    train_seconds = time.perf_counter() - start
    _save_outputs(tuner, run_dir, trainer)
    if not dist.is_main_process():
        dist.barrier()  # wait for rank 0's evaluation and record, then return what it wrote
        return TrainResult(run_dir, train_seconds, output.training_loss, None, None, {"train": vars(bundle.train_stats)})
    with stop_at_once_on_signals("measuring the tuned model", f"training is finished and saved in {run_dir}; run "
                                 "the same command again to measure it (training is not repeated)"):
        if before is not None and metric is None:
            after = unlearning_metrics(tuner, bundle, retain, device, precision, "Measuring unlearned model")
            print(f"Unlearned model: {_losses(after)}", flush=True)
            (run_dir / "eval_results.json").write_text(
                json.dumps({"metric": "unlearning", "before": before, "after": after}, indent=2), encoding="utf-8")

        if metric:
            after = held_out_metrics(tuner, metric, "Evaluating tuned model", device, precision, task, bundle)
            (run_dir / "eval_results.json").write_text(
                json.dumps({"metric": metric.name, "before": before, "after": after}, indent=2), encoding="utf-8")

    tuner.run_dir = run_dir
    _write_record(tuner, run_dir, output, train_seconds, device, precision, task, trainable, total, before, after,
                  resources=resource_summary(trainer.callback_handler.callbacks), data=_data_record(bundle),
                  nan_skipped=nan_skipped_steps(trainer), memory=memory_record(trainer, memory),
                  speed={"packing": packing, "attention": attention.kernel, "attention_reason": attention.reason,
                         "hub_kernels": bool(getattr(_inner(tuner.model), "use_kernels", False))})
    _write_report(run_dir)
    dist.barrier()
    return TrainResult(run_dir, train_seconds, output.training_loss, before, after,
                       {"train": vars(bundle.train_stats)})


def _mask_secrets_in_logs(cfg: Any) -> None:
    """From here on, log records never show the config's secrets or secret environment values."""
    from tunesmith.config.secrets import config_secrets, install_log_masking, remember_secrets

    remember_secrets(config_secrets(dataclasses.asdict(cfg)))
    install_log_masking()


def _prepare(cfg: Any, prepare_run_dir: Any, config_file: str) -> tuple[Path, Optional[Path]]:
    """Create (or reopen, to resume) the run directory and save the resolved config (the main process
    only); returns it and the checkpoint to resume from (``train.resume``)."""
    from tunesmith.training.resume import apply_plan, plan_resume

    plan = plan_resume(cfg)  # refuses a changed config or a foreign non-empty folder
    if plan.run_dir is not None and not cfg.output_dir:
        cfg.output_dir = str(plan.run_dir)  # train.resume=<run dir>: the run continues there
    run_dir = prepare_run_dir(cfg, continuing=plan.continuing)
    apply_plan(plan, run_dir)
    save_config(cfg, run_dir / config_file)
    return run_dir, plan.checkpoint.path if plan.checkpoint else None


def _load_model(tuner: Any, task: str, device: str, precision: str, label_names: list) -> None:
    """``tuner._load_model``; a keyword the model class refuses becomes a ``ConfigError`` naming
    ``model.loader_args`` (most are caught before loading, by ``check_loader_args``)."""
    from tunesmith.errors import ConfigError

    try:
        tuner._load_model(task, device, precision, label_names)
    except TypeError as err:
        if "unexpected keyword argument" not in str(err) or not tuner.config.model.loader_args:
            raise
        raise ConfigError(f"model.loader_args: {err}; the model class does not take it. Allowed: options of "
                          "from_pretrained (attn_implementation, device_map, ...) and keys of the model's "
                          "config.json") from None


def _load_retain(tuner: Any, task: str) -> Optional[Any]:
    """The retain set (``data.retain``) of an unlearning run, tokenized like the forget set; else None."""
    import dataclasses

    from tunesmith.data.pipeline import build_datasets
    from tunesmith.data.sources import check_source
    from tunesmith.errors import ConfigError
    from tunesmith.training.trainers import needs_retain, resolve_trainer

    cfg = tuner.config
    name = resolve_trainer(cfg.train.trainer, task)  # a trainer for another task fails here, before the model
    if cfg.data.retain is None:
        if needs_retain(name) and cfg.train.unlearning.retain_weight > 0:
            raise ConfigError(f"data.retain: train.trainer={name} needs a retain set (the examples whose "
                              "behaviour must stay), e.g. data.retain=facts-retain")
        return None
    if name not in ("grad_ascent", "grad_diff", "npo") and not needs_retain(name):
        raise ConfigError(f"data.retain: only unlearning trainers (grad_ascent, grad_diff, npo) use a retain "
                          f"set; train.trainer={name}")
    check_source(cfg.data.retain, "data.retain")
    retain_cfg = dataclasses.replace(cfg.data, train=cfg.data.retain, eval=None, mix=[], retain=None)
    bundle = build_datasets(retain_cfg, tuner.tokenizer, cfg.train.seed, task, tuner._custom_preprocessor())
    print(f"Retain data: {bundle.train_stats.summary()}", flush=True)
    return bundle


def _losses(result: dict[str, Any]) -> str:
    """``forget loss 0.412 (held-out 0.530), retain loss 0.380 (held-out 0.455)`` in nats per token."""
    parts = []
    for side in ("forget", "retain"):
        if f"{side}_loss" in result:
            held = result.get(f"{side}_held_out_loss")
            parts.append(f"{side} loss {result[f'{side}_loss']:.3f}" + (f" (held-out {held:.3f})" if held else ""))
    return ", ".join(parts) + " (nats per token)"


def _load_data(tuner: Any) -> tuple[str, Any]:
    """Tokenizer, task and the tokenized datasets; prints what the data holds."""
    from tunesmith.data.pipeline import build_datasets

    cfg = tuner.config
    task = tuner._load_tokenizer()
    bundle = build_datasets(cfg.data, tuner.tokenizer, cfg.train.seed, task, tuner._custom_preprocessor())
    print(f"Train data: {bundle.train_stats.summary()}", flush=True)
    if bundle.eval_stats:
        print(f"Eval data: {bundle.eval_stats.summary()}", flush=True)
    for note in bundle.notes:
        print(note, flush=True)
    return task, bundle


def _apply_adapter(tuner: Any, task: str) -> tuple[int, int]:
    """Wrap ``tuner.model`` with the configured method and print what will be trained."""
    from tunesmith.models.adapters import apply_adapter, count_parameters
    from tunesmith.training.arguments import effective_batch
    from tunesmith.training.distributed import world_size

    cfg = tuner.config
    tuner.model = apply_adapter(tuner.model, cfg.peft, task)
    trainable, total = count_parameters(tuner.model)
    processes = world_size()
    effective = effective_batch(cfg.train, processes)
    spread = f" x {processes} processes" if processes > 1 else ""
    print(f"Method: {cfg.peft.method}; trainable parameters {trainable:,} of {total:,} "
          f"({trainable / total:.2%}); {cfg.train.batch_size} sequences x {cfg.train.grad_accum} "
          f"accumulation{spread} = {effective} sequences per optimizer step", flush=True)
    return trainable, total


def _packing(cfg: Any, task: str, model: Any) -> str:
    """``data.packing`` resolved for this task and model (``auto`` -> ``padding_free`` or ``none``)."""
    from tunesmith.data.packing import resolve_packing

    # npo scores each forget answer as a whole, so its rows hold one example each.
    return resolve_packing(cfg.data.packing, task, _model_type(model), one_example_per_row=cfg.train.trainer == "npo")


def _build_trainer(tuner: Any, task: str, bundle: Any, run_dir: Path, device: str, precision: str,
                   packing: str, attention: Any, retain: Optional[Any] = None) -> Any:
    """The registered trainer (``train.trainer``) with tunesmith's collator and callbacks."""
    from tunesmith.data.collators import build_collator
    from tunesmith.data.loading import loader_settings
    from tunesmith.reporting.resources import RESOURCES_FILE, ResourceLog
    from tunesmith.training.arguments import build_training_args
    from tunesmith.training.callbacks import MetricsJsonl, ProgressBar, build_callbacks
    from tunesmith.training.trainers import build_trainer

    cfg = tuner.config
    model_type = _model_type(tuner.model)
    args = build_training_args(cfg, run_dir, device, precision, bundle.eval is not None, loader_settings(device))
    from tunesmith.config.secrets import mask_config

    params = _flat(mask_config(dataclasses.asdict(cfg)))  # recorded by MLflow, secrets masked
    return build_trainer(
        cfg.train.trainer, cfg.train.trainer_args, task, retain_dataset=retain.train if retain else None,
        unlearning=cfg.train.unlearning,
        model=tuner.model, args=args, train_dataset=bundle.train, eval_dataset=bundle.eval,
        data_collator=build_collator(cfg.data.collator, task, tuner.tokenizer, packing, device,
                                     args=cfg.data.collator_args, model_type=model_type,
                                     sequence_boundaries=attention.sequence_boundaries),
        callbacks=[ProgressBar(), MetricsJsonl(run_dir / "metrics.jsonl"), ResourceLog(run_dir / RESOURCES_FILE),
                   *build_callbacks(cfg.train, run_dir, params)],
        processing_class=tuner.tokenizer)


def _inner(model: Any) -> Any:
    """The transformers model inside a peft wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _model_type(model: Any) -> Optional[str]:
    """The transformers ``model_type`` inside peft / wrapper layers (what ``data.packing=auto`` and
    ``train.attention=auto`` decide by)."""
    return getattr(getattr(_inner(model), "config", None), "model_type", None)


def _save_outputs(tuner: Any, run_dir: Path, trainer: Any) -> None:
    """Adapter (or full weights) as safetensors, the tokenizer with its chat template, the loss curve.

    Rank 0 writes; a sharded model (fsdp / deepspeed) is gathered by every process through the Trainer.
    """
    from tunesmith.reporting.plots import plot_curves
    from tunesmith.training.callbacks import read_metrics
    from tunesmith.training.distributed import is_main_process

    if tuner.config.train.distributed.strategy != "ddp":
        trainer.save_model(str(run_dir))  # every process takes part; rank 0 writes
        (run_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; the config is in config.yaml
    elif is_main_process():
        tuner.model.save_pretrained(run_dir)
    if is_main_process():
        tuner.tokenizer.save_pretrained(run_dir)
        plot_curves(read_metrics(run_dir / "metrics.jsonl"), run_dir / "loss_curve.png")


def _write_record(tuner: Any, run_dir: Path, output: Any, train_seconds: float, device: str, precision: str,
                  task: str, trainable: int, total: int, before: Optional[dict], after: Optional[dict],
                  resources: Optional[dict] = None, data: Optional[dict] = None, nan_skipped: int = 0,
                  speed: Optional[dict] = None, memory: Optional[dict] = None) -> None:
    """``run.json``: its presence marks a finished run. ``resources``: peak memory and tokens/s;
    ``nan_skipped``: optimizer steps skipped for a NaN/inf loss or gradient (train.nan_policy=skip);
    ``speed``: the packing, attention kernel (and why) and hub kernels the run trained with;
    ``memory``: whether steps were trimmed (train.memory_trim), why, and what the trims cost."""
    from tunesmith.inference.runs import write_run_record

    write_run_record(run_dir, {
        "finished": datetime.now().isoformat(timespec="seconds"), "train_seconds": round(train_seconds, 1),
        "train_loss": output.training_loss, "global_step": output.global_step, "device": device,
        "precision": precision, "task": task, "method": tuner.config.peft.method,
        "trainable_parameters": trainable, "total_parameters": total,
        "metric": before and before["metric"], "before_score": before and before["score"],
        "after_score": after and after["score"],
        "resources": resources or {}, "data": data or {}, "nan_skipped_steps": nan_skipped,
        "speed": speed or {}, "memory": memory or {},
    })


def _write_report(run_dir: Path) -> None:
    """``report.html``: the whole run in one self-contained file."""
    from tunesmith.reporting.report import write_report

    print(f"Report: {write_report(run_dir)}", flush=True)


def _data_record(bundle: Any) -> dict[str, Any]:
    """What the data held, for the run record and the report: counts, tokens, drops, notes."""
    return {"format": bundle.info.describe() if bundle.info else None, "train": vars(bundle.train_stats),
            "eval": vars(bundle.eval_stats) if bundle.eval_stats else None, "notes": list(bundle.notes),
            "label_names": list(bundle.label_names)}


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}`` (the run's parameters for MLflow)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
