"""One training run, in order: prepare the run directory, data and model; measure the base model;
apply the adapter; train; save; measure the tuned model; write the run record.

``TrainingRun`` owns the run's state (config, tokenizer, model, run directory, decisions);
``run_training`` reads top to bottom through its steps. ``FineTuner.train`` builds the run and
takes the tuned model back afterwards.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Optional

from tunesmith.api.choices.task import check_rows_fit_trainer
from tunesmith.api.held_out import before_after_metric, held_out_metrics, unlearning_metrics
from tunesmith.api.model_setup import ModelContext, load_base_model, load_tokenizer_and_task, runtime
from tunesmith.api.pair_measures import describe_pairs, pair_scores, pair_summary
from tunesmith.api.resolved_run import ResolvedRun, resolve_run
from tunesmith.api.results import BeforeAfter, TrainedModel, TrainResult
from tunesmith.api.run_outputs import data_record, note_stream, save_outputs, write_record, write_report
from tunesmith.config import TrainConfig
from tunesmith.config.lengths import describe_length
from tunesmith.config.run_dir import RunDir
from tunesmith.errors import Interrupted, StoppedByPeer

logger = logging.getLogger(__name__)


class TrainingRun:
    """One training run, owned from start to end: set up, load the data and the model, evaluate, train
    and save, record.

    Built from the config (and a user's own preprocessor, if any) and passed down as data: the
    steps read and fill its public attributes. ``model`` is the tuned model afterwards.

    Example:
        ``run = TrainingRun(load_config(overrides=["data=arith"])); run_training(run).run_dir`` -> ``PosixPath('runs/20250101-120000')``
    """

    def __init__(self, config: TrainConfig, preprocessor: Any = None) -> None:
        self.config = config
        self.preprocessor = preprocessor  # a user's own, or None for the default (which keeps the cache)
        self.tokenizer: Any = None
        self.model: Any = None
        self.task: Optional[str] = None
        self.run_dir: Optional[Path] = None
        self.plan: Optional[ResolvedRun] = None
        self.device = self.precision = ""
        self.kernel_note: Optional[str] = None  # what train.cpu_kernel_cache did (or could not do)
        self.recorded = False  # run.json is written (by the main process)

    def context(self) -> ModelContext:
        """The current model with what measuring it needs."""
        return ModelContext(self.config, self.model, self.tokenizer, self.task or "", self.device, self.precision,
                            self.preprocessor)

    # -- set up -------------------------------------------------------------------------------
    def setup(self) -> Optional[Path]:
        """Check what can be checked before any folder is made, choose the device, start the
        processes, and create (or reopen) the run directory; returns the checkpoint to resume from."""
        from transformers import set_seed

        from tunesmith.api.components import check_metric_fits_task
        from tunesmith.training import distributed as dist
        from tunesmith.training.callbacks import check_callbacks
        from tunesmith.training.host_memory import limit_kernel_caches

        from tunesmith.api.choices.runtime import distributed_backend
        from tunesmith.api.choices.task import requested_task

        cfg = self.config
        _mask_secrets_in_logs(cfg)
        # train.trainer=reward trains a sequence classifier: the saved config says so, for loading the run.
        cfg.model.task = requested_task(cfg.train.trainer, cfg.model.task)
        check_callbacks(cfg.train)
        check_metric_fits_task(cfg)  # train.best_metric against the model's task, before any folder is made
        if "mlflow" in cfg.train.log_to:
            from tunesmith.training.loggers import check_tracking_server

            check_tracking_server(cfg.train.mlflow_tracking_uri)  # bounded: never minutes of retries
        self.kernel_note = limit_kernel_caches(cfg.train.cpu_kernel_cache)  # before the first matrix multiply
        device, self.precision = runtime(cfg)
        self.device = dist.process_device(device)  # cuda:LOCAL_RANK under torchrun / accelerate launch
        dist.init_distributed(self.device, distributed_backend(cfg.train.distributed.backend, self.device),
                              cfg.train.distributed.timeout_s)
        dist.quiet_replica()  # only rank 0 prints
        self.run_dir, checkpoint = dist.share_from_main(lambda: _prepare(cfg))
        set_seed(cfg.train.seed)
        logger.info(f"Run directory: {self.run_dir}\nDevice: {self.device}, precision: {self.precision}"
                    + (f", {dist.world_size()} processes" if dist.world_size() > 1 else "")
                    + f"\nLength: {describe_length(cfg.train.epochs, cfg.train.max_steps)}")
        return checkpoint

    def setup_data(self) -> tuple[Any, Optional[Any]]:
        """Decide the run (``ResolvedRun``), load the tokenizer and the data (and the retain set of an
        unlearning run); returns the data and the retain data."""
        self.plan = resolve_run(self.config, self.device)  # every auto of the config, decided once
        logger.debug("The run's plan:\n  %s", "\n  ".join(self.plan.describe(self.config)))
        bundle = _load_data(self)
        if bundle.info is not None and self.plan.format is None:  # data.format=auto: detected from the columns
            self.plan = self.plan.after_reading(format=bundle.info.format)
        check_rows_fit_trainer(self.plan.rows, self.plan.trainer, bundle.info)
        return bundle, _load_retain(self, self.plan)

    def setup_model(self, label_names: list[str]) -> None:
        """Load the base model (a classifier's head gets ``label_names``)."""
        _load_model(self, label_names)

    def evaluate(self, bundle: Any, retain: Optional[Any], metric: Optional[Any], desc: str) -> dict[str, Any]:
        """The current model's held-out score with ``metric``; without one (an unlearning run), its
        forget and retain losses."""
        if metric is None:
            return unlearning_metrics(self.context(), bundle, retain, desc)
        return held_out_metrics(self.context(), metric, desc, bundle)

    # -- train --------------------------------------------------------------------------------
    def train(self, bundle: Any, retain: Optional[Any], checkpoint: Optional[Path]) -> TrainedModel:
        """Apply the adapter, build the trainer and train; returns what the record needs."""
        from tunesmith.api.choices.training import choose_attention, compile_note, lora_kernel_note
        from tunesmith.training.guarded_run import nan_skipped_steps, train_with_guards
        from tunesmith.reporting.resources import resource_summary
        from tunesmith.training.host_memory import TrimPlan, apply_memory_trim, memory_record
        from tunesmith.training.memory_probe import MemorySettings, build_memory_probe
        from tunesmith.training.speed import apply_speed_settings, speed_context

        cfg, plan = self.config, self.plan
        trainable, total = _apply_adapter(self, self.task)
        attention = choose_attention(cfg.train.attention, self.device, self.precision,
                                     plan.packing.several_examples_per_row, self.model, cfg.data.max_length)
        if attention.kernel != plan.attention:  # the loaded model attends otherwise than its config said
            logger.info(f"Attention: {attention.kernel} instead of the planned {plan.attention}, as the loaded "
                        "model allows")
            self.plan = plan = plan.after_reading(attention=attention.kernel, attention_reason=attention.reason)
        logger.info(f"Attention: {attention.kernel} ({attention.reason})")
        trainer = _build_trainer(self, plan.trainer, self.task, bundle, self.run_dir, self.device, self.precision,
                                 plan.packing.value, attention, retain)
        for note in apply_speed_settings(trainer, cfg.train):  # train.logits, train.logits_chunk
            logger.info(note)
        trim = TrimPlan(cfg.train.memory_trim, plan.memory_trim, plan.memory_trim_reason)  # decided in the plan
        logger.info(trim.describe() + (f"\n{self.kernel_note}" if self.kernel_note else ""))
        memory = {**apply_memory_trim(trainer, trim), "cpu_kernel_cache": cfg.train.cpu_kernel_cache}
        probe = build_memory_probe(trainer, plan.memory_probe, plan.rows, self.task,
                                   MemorySettings.from_config(cfg, plan.packing.value, plan.trainer, plan.reference),
                                   self.device)  # train.memory_probe: the longest batch runs first
        start = time.perf_counter()
        # train.frozen_weights, train.attention, train.lora_kernel, train.compile
        with speed_context(self.model, plan.cast_frozen_weights, attention, plan.lora_kernel == "fused",
                           plan.compile_layers) as (fused, compiled):
            if cfg.peft.method != "full":
                logger.info(lora_kernel_note(cfg.train.lora_kernel, plan.lora_kernel, plan.lora_kernel_reason,
                                             fused))
            logger.info(compile_note(cfg.train.compile, plan.compile_layers, plan.compile_reason, compiled))
            output = train_with_guards(trainer, cfg, checkpoint, probe)  # atomic checkpoints, resume, NaN, signals
        train_seconds = time.perf_counter() - start
        save_outputs(self, RunDir(self.run_dir), trainer)
        return TrainedModel(output=output, train_seconds=train_seconds, trainable=trainable, total=total,
                            memory_probe=probe.record(),
                            resources=resource_summary(trainer.callback_handler.callbacks),
                            nan_skipped=nan_skipped_steps(trainer), memory=memory_record(trainer, memory),
                            speed={"packing": plan.packing.value, "attention": attention.kernel,
                                   "attention_reason": attention.reason, "lora_kernel": "fused" if fused else "peft",
                                   "compiled_layers": compiled,
                                   "hub_kernels": bool(getattr(_inner(self.model), "use_kernels", False))})


def run_training(run: TrainingRun) -> TrainResult:
    """Run the whole job described by ``run.config``; ``run.model`` is the tuned model afterwards.

    An exception leaving the run carries the run directory (``err.tunesmith_run_dir``) once it
    exists, so the command line writes the traceback there (``cli/error_boundary.py``). In a run of
    several processes it also carries the process (``err.tunesmith_rank``: ``rank 1 of 2``), and the
    first process to fail tells the others (``distributed.announce_failure``); a process whose error
    follows from another's failure (a closed connection, the launcher's SIGTERM) raises
    ``StoppedByPeer`` naming that process instead.
    """
    from tunesmith.training import distributed as dist

    try:
        return _run_training(run)
    except BaseException as err:
        failure = _peer_failure(err)
        if failure is not None:
            stopped = dist.stopped_by_peer(failure)
            _label(stopped, run)
            raise stopped from err
        if dist.world_size() > 1 and not isinstance(err, (KeyboardInterrupt, Interrupted, StoppedByPeer)):
            dist.announce_failure(err)  # a stop on a signal, or caused by another process, is no failure of its own
        _label(err, run)
        raise


def _peer_failure(err: BaseException) -> Optional[str]:
    """Another process's failure that ``err`` follows from, in a run of several processes; else None."""
    from tunesmith.training import distributed as dist

    if dist.world_size() < 2 or isinstance(err, StoppedByPeer):
        return None
    return dist.peer_failure()


def _label(err: BaseException, run: TrainingRun) -> None:
    """Attach the run directory and, with several processes, this process's rank to ``err``."""
    from tunesmith.training import distributed as dist

    marks = {"tunesmith_rank": dist.rank_label() if dist.world_size() > 1 else None,
             "tunesmith_run_dir": run.run_dir}
    for name, value in marks.items():
        if value is not None and getattr(err, name, None) is None:
            try:
                setattr(err, name, value)
            except AttributeError:  # an exception type with __slots__
                pass


def _run_training(run: TrainingRun) -> TrainResult:
    from tunesmith.evaluation.metrics import format_score
    from tunesmith.training import distributed as dist
    from tunesmith.training.signals import stop_at_once_on_signals

    cfg = run.config
    checkpoint = run.setup()
    run_dir = RunDir(run.run_dir)
    # Every process prepares its data: the tokenized-data cache lets one of them tokenize while the
    # others wait on its file lock (with progress, no distributed timeout), then read the result.
    bundle, retain = run.setup_data()
    with dist.main_process_first():  # rank 0 converts a GGUF file once
        # A reward model is a classifier with one output: the score of an answer.
        run.setup_model(["reward"] if run.plan.scores_answers else bundle.label_names)

    # Held-out measurements run on rank 0 only, and not on sharded (fsdp / deepspeed) models.
    measure = dist.is_main_process() and cfg.train.distributed.strategy == "ddp"
    metric = (before_after_metric(cfg, run.task, bundle)
              if measure and retain is None and not run.plan.scores_answers else None)
    if metric is not None and run.plan.metric is None:  # eval.metric=auto: picked from the held-out examples
        run.plan = run.plan.after_reading(metric=metric.name)
    pairs = measure and _measures_pairs(run, bundle)  # held-out chosen / rejected pairs
    before = after = pair_start = None
    with stop_at_once_on_signals("measuring the base model", "nothing was trained yet"):
        if pairs:
            pair_start = pair_scores(run.context(), bundle.eval, run.plan.scores_answers, "Scoring held-out pairs")
            logger.info(f"Base model: {describe_pairs(pair_summary(pair_start))}")
        if measure and retain is not None:
            before = run.evaluate(bundle, retain, None, "Measuring base model")
            logger.info(f"Base model: {_losses(before)}")
        if metric:
            before = run.evaluate(bundle, None, metric, "Evaluating base model")
            logger.info(f"Base model: {format_score(before)}")

    trained = run.train(bundle, retain, checkpoint)
    output, train_seconds = trained.output, trained.train_seconds
    if not dist.is_main_process():
        dist.barrier()  # wait for rank 0's evaluation and record, then return what it wrote
        return TrainResult(run_dir.path, train_seconds, output.training_loss, None, None,
                           {"train": vars(bundle.train_stats)})
    with stop_at_once_on_signals("measuring the tuned model", f"training is finished and saved in {run_dir.path}; "
                                 "run the same command again to measure it (training is not repeated)"):
        if before is not None and metric is None:
            after = run.evaluate(bundle, retain, None, "Measuring unlearned model")
            logger.info(f"Unlearned model: {_losses(after)}")
            run_dir.write_eval_results(BeforeAfter("unlearning", before, after).to_dict())

        if metric:
            after = run.evaluate(bundle, None, metric, "Evaluating tuned model")
        if pairs:
            before, after = _with_pairs(run, bundle, pair_start, before, after)
        if metric or pairs:
            run_dir.write_eval_results(BeforeAfter(before["metric"], before, after).to_dict())

    run.recorded = True
    if bundle.streamed:
        note_stream(bundle, output.global_step)
    write_record(run, run_dir, trained, before, after, data_record(bundle))
    write_report(run_dir)
    dist.barrier()
    return TrainResult(run_dir.path, train_seconds, output.training_loss, before, after,
                       {"train": vars(bundle.train_stats)})


def _measures_pairs(run: TrainingRun, bundle: Any) -> bool:
    """Whether the run scores held-out chosen / rejected pairs before and after training."""
    return (run.plan.rows == "preference" and run.config.eval.before_after != "off" and bundle.eval is not None
            and len(bundle.eval) > 0)


def _with_pairs(run: TrainingRun, bundle: Any, start: dict[str, list[float]], before: Optional[dict],
                after: Optional[dict]) -> tuple[dict, dict]:
    """The before / after results with the held-out pairs' measures added (``api.pair_measures``);
    without another metric, ``pair_accuracy`` is the score."""
    scores = pair_scores(run.context(), bundle.eval, run.plan.scores_answers, "Scoring held-out pairs")
    reference = start if run.plan.reference else None  # the starting model is the reference
    start_summary = pair_summary(start)
    end_summary = pair_summary(scores, reference, run.config.train.preference.beta)
    logger.info(f"Tuned model: {describe_pairs(end_summary)}")
    if before is None or after is None:
        shown = {"metric": "pair_accuracy", "metric_label": "chosen preferred", "percent": True}
        return ({**shown, "score": start_summary["pair_accuracy"], **start_summary},
                {**shown, "score": end_summary["pair_accuracy"], **end_summary})
    return {**before, **start_summary}, {**after, **end_summary}


def _mask_secrets_in_logs(cfg: Any) -> None:
    """From here on, log records never show the config's secrets or secret environment values."""
    from tunesmith.config.secrets import config_secrets, install_log_masking, remember_secrets

    remember_secrets(config_secrets(dataclasses.asdict(cfg)))
    install_log_masking()


def _prepare(cfg: Any) -> tuple[Path, Optional[Path]]:
    """Create (or reopen, to resume) the run directory and save the resolved config (the main process
    only); returns it and the checkpoint to resume from (``train.resume``)."""
    from tunesmith.api.choices.training import plan_resume
    from tunesmith.training.resume import apply_plan

    plan = plan_resume(cfg)  # refuses a changed config or a foreign non-empty folder
    if plan.run_dir is not None and not cfg.output_dir:
        cfg.output_dir = str(plan.run_dir)  # train.resume=<run dir>: the run continues there
    run = RunDir.create(cfg.output_dir, overwrite=cfg.overwrite, continuing=plan.continuing)
    apply_plan(plan, run)
    run.save_config(cfg)
    return run.path, plan.checkpoint.path if plan.checkpoint else None


def _load_model(run: TrainingRun, label_names: list) -> None:
    """The base model (``load_base_model``); a keyword the model class refuses becomes a ``ConfigError``
    naming ``model.loader_args`` (most are caught before loading, by ``check_loader_args``)."""
    from tunesmith.errors import ConfigError

    try:
        run.model = load_base_model(run.config, run.tokenizer, run.task, run.device, run.precision, label_names)
        if run.config.model.adapter:  # continue an adapter: it is the "before" model, and it trains on
            from tunesmith.models.adapters import PEFT_TASK_TYPES
            from tunesmith.models.start_adapter import load_start_adapter

            m = run.config.model
            run.model = load_start_adapter(run.model, m.adapter, m.name_or_path, run.config.peft,
                                           PEFT_TASK_TYPES[run.task])
    except TypeError as err:
        if "unexpected keyword argument" not in str(err) or not run.config.model.loader_args:
            raise
        raise ConfigError(f"model.loader_args: {err}; the model class does not take it. Allowed: options of "
                          "from_pretrained (attn_implementation, device_map, ...) and keys of the model's "
                          "config.json") from None


def _load_retain(run: TrainingRun, plan: ResolvedRun) -> Optional[Any]:
    """The retain set (``data.retain``) of an unlearning run, tokenized like the forget set; else None."""
    import dataclasses

    from tunesmith.api.data_entry import build_datasets
    from tunesmith.data.sources import check_source
    from tunesmith.errors import ConfigError
    from tunesmith.training.trainers import TRAINERS, trainer_traits

    cfg = run.config
    name = plan.trainer
    if cfg.data.retain is None:
        if plan.needs_retain and cfg.train.unlearning.retain_weight > 0:
            raise ConfigError(f"data.retain: train.trainer={name} needs a retain set (the examples whose "
                              "behaviour must stay), e.g. data.retain=facts-retain")
        return None
    if not plan.takes_retain:
        takers = ", ".join(n for n in TRAINERS.names() if trainer_traits(n).takes_retain)
        raise ConfigError(f"data.retain: only unlearning trainers ({takers}) use a retain "
                          f"set; train.trainer={name}")
    check_source(cfg.data.retain, "data.retain")
    retain_cfg = dataclasses.replace(cfg.data, train=cfg.data.retain, eval=None, mix=[], retain=None)
    bundle = build_datasets(retain_cfg, run.tokenizer, cfg.train.seed, plan.task.value, run.preprocessor,
                            packing=plan.packing.value)
    logger.info(f"Retain data: {bundle.train_stats.summary()}")
    return bundle


def _losses(result: dict[str, Any]) -> str:
    """``forget loss 0.412 (held-out 0.530), retain loss 0.380 (held-out 0.455)`` in nats per token."""
    parts = []
    for side in ("forget", "retain"):
        if f"{side}_loss" in result:
            held = result.get(f"{side}_held_out_loss")
            parts.append(f"{side} loss {result[f'{side}_loss']:.3f}" + (f" (held-out {held:.3f})" if held else ""))
    return ", ".join(parts) + " (nats per token)"


def _load_data(run: TrainingRun) -> Any:
    """Tokenizer, task and the tokenized datasets; prints what the data holds."""
    from tunesmith.api.data_entry import build_datasets

    cfg = run.config
    run.tokenizer, run.task = load_tokenizer_and_task(cfg)
    from tunesmith.training.distributed import world_size

    # data.streaming: the stream keeps its position once per optimizer step (every process's rows).
    rows_per_step = cfg.train.batch_size * cfg.train.grad_accum * world_size()
    bundle = build_datasets(cfg.data, run.tokenizer, cfg.train.seed, run.task, run.preprocessor,
                            packing=run.plan.packing.value, rows_per_step=rows_per_step)
    if not bundle.streamed:
        logger.info(f"Train data: {bundle.train_stats.summary()}")
    else:
        logger.info(f"Train data: streamed from {cfg.data.train} ({bundle.info.describe()}); counted as it is read")
    if bundle.eval_stats:
        logger.info(f"Eval data: {bundle.eval_stats.summary()}")
    for note in bundle.notes:
        logger.info(note)
    return bundle


def _apply_adapter(run: TrainingRun, task: str) -> tuple[int, int]:
    """Wrap ``run.model`` with the configured method and print what will be trained."""
    from tunesmith.models.adapters import apply_adapter, count_parameters
    from tunesmith.training.arguments import effective_batch
    from tunesmith.training.distributed import world_size

    cfg = run.config
    run.model = apply_adapter(run.model, cfg.peft, task)
    trainable, total = count_parameters(run.model)
    processes = world_size()
    effective = effective_batch(cfg.train, processes)
    spread = f" x {processes} processes" if processes > 1 else ""
    logger.info(f"Method: {cfg.peft.method}; trainable parameters {trainable:,} of {total:,} "
                f"({trainable / total:.2%}); {cfg.train.batch_size} sequences x {cfg.train.grad_accum} "
                f"accumulation{spread} = {effective} sequences per optimizer step")
    return trainable, total


def _build_trainer(run: TrainingRun, trainer_name: str, task: str, bundle: Any, run_dir: Path, device: str, precision: str,
                   packing: str, attention: Any, retain: Optional[Any] = None) -> Any:
    """The registered trainer (``train.trainer``) with tunesmith's collator and callbacks."""
    from tunesmith.api.grpo_setup import grpo_trainer_inputs
    from tunesmith.data.collators import build_collator
    from tunesmith.data.loading import loader_settings
    from tunesmith.reporting.resources import ResourceLog
    from tunesmith.api.choices.training import build_training_args
    from tunesmith.training.callbacks import MetricsJsonl, ProgressBar, build_callbacks
    from tunesmith.training.trainers import build_trainer

    cfg = run.config
    model_type = _model_type(run.model)
    args = build_training_args(cfg, run_dir, device, precision, bundle.eval is not None, loader_settings(device))
    from tunesmith.config.secrets import mask_config

    params = _flat(mask_config(dataclasses.asdict(cfg)))  # recorded by MLflow, secrets masked
    collator = build_collator(run.plan.collator, task, run.tokenizer, packing, device, args=cfg.data.collator_args,
                              sequence_boundaries=attention.sequence_boundaries)
    if run.plan.rows != "examples":
        from tunesmith.data.preference_collators import preference_collator

        collator = preference_collator(run.plan.rows, collator)  # pairs / unpaired answers / prompts
    inputs = dict(
        retain_dataset=retain.train if retain else None, unlearning=cfg.train.unlearning,
        preference=cfg.train.preference, reference=run.plan.reference,
        model=run.model, args=args, train_dataset=bundle.train, eval_dataset=bundle.eval,
        data_collator=collator,
        callbacks=[ProgressBar(), MetricsJsonl(RunDir(run_dir).metrics_file), ResourceLog(RunDir(run_dir).resources_file),
                   *build_callbacks(cfg.train, run_dir, params)],
        processing_class=run.tokenizer)
    inputs.update(grpo_trainer_inputs(cfg, trainer_name))  # grpo: its settings and reward functions
    return build_trainer(trainer_name, cfg.train.trainer_args, task, **inputs)


def _inner(model: Any) -> Any:
    """The transformers model inside a peft wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _model_type(model: Any) -> Optional[str]:
    """The transformers ``model_type`` inside peft / wrapper layers (what ``data.packing=auto`` and
    ``train.attention=auto`` decide by)."""
    return getattr(getattr(_inner(model), "config", None), "model_type", None)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}`` (the run's parameters for MLflow)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
