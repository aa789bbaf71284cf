"""The only place that builds ``transformers.TrainingArguments`` from a tunesmith config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.config.schema import TrainConfig


def build_training_args(cfg: TrainConfig, run_dir: Path, device: str, precision: str, has_eval: bool,
                        loader: Any = None) -> Any:
    """Map ``train.*`` keys onto TrainingArguments. Checkpoints go to ``run_dir/checkpoints``.

    ``loader`` carries the device-aware DataLoader settings (workers, pinned memory, prefetch) that
    the data layer chose for ``device``; without it the loader runs in the main process.
    """
    from transformers import TrainingArguments

    t = cfg.train
    evaluate = has_eval and t.eval_steps > 0
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.lr,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,  # a float below 1 is read as a ratio of the total steps
        weight_decay=t.weight_decay,
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if t.save_steps > 0 else "no",
        save_steps=t.save_steps or 500,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=t.eval_steps if evaluate else None,
        report_to="none",
        disable_tqdm=True,  # tunesmith's own progress bar shows loss, tokens/s and ETA
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        # Batches of similar lengths pad little; transformers' own length-grouped sampler does it.
        train_sampling_strategy="group_by_length" if cfg.data.packing == "group_by_length" else "random",
        dataloader_pin_memory=loader.pin_memory if loader else device.startswith("cuda"),
        dataloader_num_workers=loader.num_workers if loader else 0,
        dataloader_persistent_workers=bool(loader and loader.persistent_workers),
        dataloader_prefetch_factor=loader.prefetch_factor if loader else None,
    )
