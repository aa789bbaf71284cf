"""What a finished training run leaves in its directory: the weights and tokenizer with the loss
curves, ``run.json`` (written last: its presence marks the run finished) and ``report.html``.

``run`` is the ``api.train_job.TrainingRun`` that trained (its config, model, tokenizer, plan).
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from tunesmith.api.results import RunRecord, TrainedModel
from tunesmith.config.run_dir import RunDir

logger = logging.getLogger(__name__)


def save_outputs(run: Any, run_dir: RunDir, trainer: Any) -> None:
    """Adapter (or full weights) as safetensors, the tokenizer with its chat template, the loss curve.

    Rank 0 writes; a sharded model (fsdp / deepspeed) is gathered by every process through the Trainer.
    """
    from tunesmith.reporting.plots import plot_curves, plot_reward_curves
    from tunesmith.training.callbacks import read_metrics
    from tunesmith.training.distributed import is_main_process

    if run.config.train.distributed.strategy != "ddp":
        trainer.save_model(str(run_dir.path))  # every process takes part; rank 0 writes
        run_dir.training_args_file.unlink(missing_ok=True)  # a pickle; the config is in config.yaml
    elif is_main_process():
        run.model.save_pretrained(run_dir.path)
    if is_main_process():
        run.tokenizer.save_pretrained(run_dir.path)
        records = read_metrics(run_dir.metrics_file)
        plot_curves(records, run_dir.loss_curve_file)
        plot_reward_curves(records, run_dir.reward_curve_file)  # a grpo run's rewards, KL and lengths


def write_record(run: Any, run_dir: RunDir, trained: TrainedModel, before: Optional[dict],
                 after: Optional[dict], data: dict[str, Any]) -> None:
    """``run.json`` (a ``RunRecord``): its presence marks a finished run. ``resources``: peak memory and
    tokens/s; ``nan_skipped_steps``: optimizer steps skipped for a NaN/inf loss or gradient
    (train.nan_policy=skip); ``speed``: the packing, attention kernel (and why) and hub kernels the run
    trained with; ``memory``: whether steps were trimmed (train.memory_trim), why, and what the trims
    cost; ``plan``: the run's decisions (``ResolvedRun``) and the batch the memory probe ran
    (``memory_probe_batch``)."""
    record = RunRecord.from_run(trained, device=run.device, precision=run.precision, task=run.task,
                                method=run.config.peft.method, before=before, after=after, data=data,
                                plan={**run.plan.record(), **trained.memory_probe} if run.plan else {})
    run_dir.write_record(record.to_dict())


def write_report(run: RunDir) -> None:
    """``report.html``: the whole run in one self-contained file."""
    from tunesmith.reporting.report import write_report

    logger.info(f"Report: {write_report(run.path)}")


def note_stream(bundle: Any, steps: int) -> None:
    """A streaming run's counts, now that training has read what it read: tokenizing counts for the
    record, and how much of the corpus was read (printed and kept in the notes)."""
    bundle.train_stats = bundle.train.stats
    read = bundle.train.progress()
    share = (f", {read['bytes_read'] / 2**20:.1f} of {read['total_bytes'] / 2**20:.1f} MiB of this pass"
             if read["total_bytes"] else "")
    note = (f"data.streaming: read {read['rows_read']} rows ({read['passes']} full passes{share}); "
            f"trained on {steps * bundle.train.rows_per_step} rows in {steps} steps; tokenized: "
            f"{bundle.train_stats.summary()}")
    logger.info(note)
    bundle.notes.append(note)


def data_record(bundle: Any) -> dict[str, Any]:
    """What the data held, for the run record and the report: counts, tokens, drops, notes."""
    return {"format": bundle.info.describe() if bundle.info else None, "train": vars(bundle.train_stats),
            "eval": vars(bundle.eval_stats) if bundle.eval_stats else None, "notes": list(bundle.notes),
            "label_names": list(bundle.label_names)}
