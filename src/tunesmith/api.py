"""``FineTuner``: the one composition root. The CLI and Python users both go through it.

    >>> from tunesmith import FineTuner
    >>> result = FineTuner.from_yaml(None, ["train.max_steps=20"]).train()
    >>> result.run_dir, result.after["accuracy"]
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from tunesmith.config import TrainConfig, load_config, save_config
from tunesmith.errors import RunDirError


@dataclass
class TrainResult:
    """What a finished run reports; everything here is also written to the run directory."""

    run_dir: Path
    train_seconds: float
    train_loss: Optional[float]
    before: Optional[dict[str, Any]] = None  # held-out results of the base model (exact match or accuracy)
    after: Optional[dict[str, Any]] = None  # ... and of the tuned model, on the same questions
    data: dict[str, Any] = field(default_factory=dict)


def default_run_dir() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def prepare_run_dir(cfg: TrainConfig) -> Path:
    """Create the run directory; never write into a non-empty one unless ``overwrite`` is set."""
    run_dir = Path(cfg.output_dir) if cfg.output_dir else default_run_dir()
    if run_dir.exists() and any(run_dir.iterdir()) and not cfg.overwrite:
        raise RunDirError(
            f"output_dir: {str(run_dir)!r} is not empty; choose another output_dir or pass "
            "overwrite=true (or --overwrite) to replace what is there"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.jsonl", "run.json"):  # an overwritten run starts from a clean log
        (run_dir / stale).unlink(missing_ok=True)
    return run_dir


class FineTuner:
    """Fine-tunes one model on one dataset as described by a ``TrainConfig``.

    The constructor only records and checks the config (registry names, file paths); models and
    data are loaded by ``train`` / ``evaluate``.
    """

    def __init__(self, config: TrainConfig | None = None) -> None:
        from tunesmith.data.pipeline import check_data_config
        from tunesmith.training.trainers import TRAINERS

        self.config = config or load_config()
        check_data_config(self.config.data)
        TRAINERS.get(self.config.train.trainer)
        self.model: Any = None
        self.tokenizer: Any = None

    @classmethod
    def from_config(cls, config: TrainConfig) -> "FineTuner":
        return cls(config)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> "FineTuner":
        return cls(load_config(path, overrides))

    # -- pieces -------------------------------------------------------------------------------
    def _runtime(self) -> tuple[str, str]:
        import torch

        from tunesmith.models.precision import resolve_device, resolve_precision

        if self.config.train.num_threads:
            torch.set_num_threads(self.config.train.num_threads)
        device = resolve_device(self.config.model.device)
        return device, resolve_precision(self.config.train.precision, device)

    def _autocast(self, device: str, precision: str):
        import torch

        if precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if precision == "bf16" else torch.float16
            return torch.autocast(device.split(":")[0], dtype=dtype)
        return contextlib.nullcontext()

    def _load_tokenizer(self) -> str:
        """Load the tokenizer (with the configured chat template) and decide the task."""
        from tunesmith.data.templates import resolve_template
        from tunesmith.models.loading import infer_task, load_model_config, load_tokenizer

        m = self.config.model
        task = infer_task(load_model_config(m.name_or_path, m.trust_remote_code, m.revision), m.task)
        self.tokenizer = load_tokenizer(m.name_or_path, m.trust_remote_code, m.revision)
        if self.config.data.template != "auto":
            # Saved with the run, so inference renders prompts exactly as training did.
            self.tokenizer.chat_template = resolve_template(self.tokenizer, self.config.data).jinja
        return task

    def _load_model(self, task: str, device: str, precision: str, label_names: list[str]) -> None:
        from tunesmith.models.loading import load_model
        from tunesmith.models.precision import resolve_weight_dtype
        from tunesmith.models.quantization import (is_quantized_method, prepare_quantized_for_training,
                                                   quantization_kwargs)

        m = self.config.model
        extra: dict[str, Any] = {}
        if task == "sequence_classification" and label_names:
            extra = {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
                     "label2id": {n: i for i, n in enumerate(label_names)}}
        method = self.config.peft.method
        if is_quantized_method(method):
            extra.update(quantization_kwargs(self.config.peft, device))  # 4-bit or 8-bit base
        self.model = load_model(m.name_or_path, task, resolve_weight_dtype(m.dtype, device, precision),
                                device, m.trust_remote_code, m.revision, allow_pickle=m.allow_pickle, **extra)
        if is_quantized_method(method):
            # Before any evaluation: keeps the 4-bit layers on kernels whose backward is correct.
            self.model = prepare_quantized_for_training(self.model, method)
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id  # decoder classifiers need it

    def _before_after_metric(self, task: str, bundle: Any) -> Optional[str]:
        """Which held-out comparison of base and tuned model this run makes, if any."""
        from tunesmith.data.builtin import BUILTIN_DATASETS
        from tunesmith.data.sources import is_builtin

        mode = self.config.eval.before_after
        if mode == "off":
            return None
        if task == "sequence_classification":
            return "accuracy" if bundle.eval is not None else None  # one cheap pass over the eval set
        if task != "causal_lm":
            return None
        name = self.config.data.eval or self.config.data.train
        builtin_exact = is_builtin(name) and BUILTIN_DATASETS.get(name).metric == "exact_match"
        return "exact_match" if mode == "on" or builtin_exact else None

    def _held_out(self, metric: str, desc: str, device: str, precision: str, task: str, bundle: Any,
                  conversations: list) -> dict[str, Any]:
        """Exact match by generation, or classification metrics, on the held-out set."""
        if metric == "accuracy":
            from tunesmith.data.collators import build_collator
            from tunesmith.evaluation.classification import evaluate_classification

            collator = build_collator("auto", task, self.tokenizer, "none", device)
            return evaluate_classification(self.model, bundle.eval, collator, self.config.eval.batch_size,
                                           bundle.label_names or None, device,
                                           lambda: self._autocast(device, precision), desc)
        from tunesmith.evaluation.exact_match import evaluate_exact_match
        from tunesmith.models.generation import GenerationSettings

        settings = GenerationSettings(max_new_tokens=self.config.eval.max_new_tokens)
        with self._autocast(device, precision):
            result = evaluate_exact_match(self.model, self.tokenizer, conversations, settings,
                                          self.config.eval.batch_size, desc)
        return result.to_dict()

    def preprocess_data(self) -> Any:
        """Load the tokenizer and build the tokenized datasets (a ``DataBundle``) without a model."""
        task = self._load_tokenizer()
        from tunesmith.data.pipeline import build_datasets

        return build_datasets(self.config.data, self.tokenizer, self.config.train.seed, task)

    def inspect_data(self, num_examples: int = 3, color: bool = False, png: Optional[Path] = None) -> dict[str, Any]:
        """What the model will be trained on: counts, lengths, padding waste and marked examples."""
        import dataclasses as dc

        from tunesmith.data.inspect import histogram_lines, histogram_png, padding_report, show_example
        from tunesmith.data.pipeline import build_datasets

        task = self._load_tokenizer()
        data_cfg = dc.replace(self.config.data, packing="none")  # lengths per example, not per block
        bundle = build_datasets(data_cfg, self.tokenizer, self.config.train.seed, task)
        lengths = [len(ids) for ids in bundle.train["input_ids"]]
        report: dict[str, Any] = {
            "format": bundle.info.describe() if bundle.info else None,
            "train": bundle.train_stats.summary(),
            "eval": bundle.eval_stats.summary() if bundle.eval_stats else None,
            "notes": bundle.notes,
            "histogram": histogram_lines(lengths),
            "padding": padding_report(lengths, self.config.train.batch_size, self.config.data.max_length,
                                      self.config.train.seed),
            "packing": self.config.data.packing,
            "examples": [show_example(self.tokenizer, bundle.train[i], color, bundle.label_names)
                         for i in range(min(num_examples, len(bundle.train)))],
        }
        if png is not None:
            report["png"] = str(histogram_png(lengths, png, self.config.data.max_length))
        return report

    # -- the run ------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Load, (evaluate the base model,) train, save, (evaluate the tuned model) and report."""
        from transformers import set_seed

        from tunesmith.data.collators import build_collator
        from tunesmith.data.loading import loader_settings
        from tunesmith.data.pipeline import build_datasets, load_eval_conversations
        from tunesmith.inference.runs import CONFIG_FILE, write_run_record
        from tunesmith.models.adapters import apply_adapter, count_parameters
        from tunesmith.reporting.plots import plot_curves
        from tunesmith.training.arguments import build_training_args
        from tunesmith.training.callbacks import MetricsJsonl, ProgressBar, read_metrics
        from tunesmith.training.trainers import TRAINERS

        cfg = self.config
        run_dir = prepare_run_dir(cfg)
        save_config(cfg, run_dir / CONFIG_FILE)
        device, precision = self._runtime()
        set_seed(cfg.train.seed)
        print(f"Run directory: {run_dir}\nDevice: {device}, precision: {precision}", flush=True)

        task = self._load_tokenizer()
        bundle = build_datasets(cfg.data, self.tokenizer, cfg.train.seed, task)
        print(f"Train data: {bundle.train_stats.summary()}", flush=True)
        if bundle.eval_stats:
            print(f"Eval data: {bundle.eval_stats.summary()}", flush=True)
        for note in bundle.notes:
            print(note, flush=True)
        self._load_model(task, device, precision, bundle.label_names)

        metric = self._before_after_metric(task, bundle)
        conversations: list = []
        before = after = None
        if metric == "exact_match":
            conversations = load_eval_conversations(cfg.data, cfg.train.seed, cfg.eval.max_samples)
        if metric:
            before = self._held_out(metric, "Evaluating base model", device, precision, task, bundle, conversations)
            print(f"Base model {metric.replace('_', ' ')}: {before['accuracy']:.1%} "
                  f"({before['correct']}/{before['total']})", flush=True)

        self.model = apply_adapter(self.model, cfg.peft, task)
        trainable, total = count_parameters(self.model)
        effective = cfg.train.batch_size * cfg.train.grad_accum
        print(f"Method: {cfg.peft.method}; trainable parameters {trainable:,} of {total:,} "
              f"({trainable / total:.2%}); {cfg.train.batch_size} sequences x {cfg.train.grad_accum} "
              f"accumulation = {effective} sequences per optimizer step", flush=True)

        args = build_training_args(cfg, run_dir, device, precision, bundle.eval is not None, loader_settings(device))
        trainer = TRAINERS.get(cfg.train.trainer)(
            model=self.model, args=args, train_dataset=bundle.train, eval_dataset=bundle.eval,
            data_collator=build_collator(cfg.data.collator, task, self.tokenizer, cfg.data.packing, device),
            callbacks=[ProgressBar(), MetricsJsonl(run_dir / "metrics.jsonl")],
            processing_class=self.tokenizer)
        start = time.perf_counter()
        output = trainer.train()
        train_seconds = time.perf_counter() - start

        self.model.save_pretrained(run_dir)  # adapter (or full weights) as safetensors
        self.tokenizer.save_pretrained(run_dir)  # with its chat template
        plot_curves(read_metrics(run_dir / "metrics.jsonl"), run_dir / "loss_curve.png")

        if metric:
            after = self._held_out(metric, "Evaluating tuned model", device, precision, task, bundle, conversations)
            (run_dir / "eval_results.json").write_text(
                json.dumps({"metric": metric, "before": before, "after": after}, indent=2), encoding="utf-8")

        result = TrainResult(run_dir, train_seconds, output.training_loss, before, after,
                             {"train": vars(bundle.train_stats)})
        write_run_record(run_dir, {
            "finished": datetime.now().isoformat(timespec="seconds"), "train_seconds": round(train_seconds, 1),
            "train_loss": output.training_loss, "global_step": output.global_step, "device": device,
            "precision": precision, "task": task, "method": cfg.peft.method,
            "trainable_parameters": trainable, "total_parameters": total,
            "before_accuracy": before and before["accuracy"], "after_accuracy": after and after["accuracy"],
        })
        return result
