"""``FineTuner``: records and checks a config, then loads, trains, evaluates and generates on demand."""

from __future__ import annotations

import copy
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from tunesmith.api.results import TrainResult
from tunesmith.config import TrainConfig, load_config, update_config
from tunesmith.config.keywords import keyword_updates, trainer_updates
from tunesmith.config.update import disagreements
from tunesmith.errors import ConfigError, RunDirError

logger = logging.getLogger(__name__)


INSPECT_STREAM_ROWS = 1000  # examples of a streaming config that ``inspect_data`` reads


class FineTuner:
    """Fine-tunes one model on one dataset as described by a ``TrainConfig`` or by keywords.

    The constructor only records and checks the config (registry names, file paths); models and
    data are loaded by ``train`` / ``evaluate`` / ``generate``. Keywords left at their defaults keep
    the base config's values; the others are applied with ``update_config`` (bad values raise
    ``ConfigError``).

    Args:
        model_id: model alias, hub id or local folder (``model.name_or_path``); a ``TrainConfig``
            here is the whole config, as in ``FineTuner(cfg)``.
        device: ``cpu``, ``cuda`` (or ``gpu``), ``cuda:1``, ``mps`` (``model.device``); also the
            second positional argument, as in ``FineTuner("gpt2", "cuda")``.
        dataset_name: dataset name, hub id or local file (``data.train``).
        lora_r, lora_alpha, lora_bias: ``peft.r``, ``peft.alpha``, ``peft.bias``.
        lora_target_modules: ``peft.target_modules``; None keeps the config's (``all-linear``).
        preprocessor: a ``tunesmith.data.preprocessor.Preprocessor``; default ``ChatTemplatePreprocessor``.
        lora_task_type: peft ``TaskType`` or its name (``"CAUSAL_LM"``, ``"SEQ_CLS"``,
            ``"SEQ_2_SEQ_LM"``, ``"causal_lm"``) -> ``model.task``; None infers it from the model.
        max_length: the sequence length in tokens, for training and generation alike: each training
            example has at most this many tokens (``data.max_length``) and ``generate`` / ``__call__``
            write at most this many new tokens (``eval.max_new_tokens``, unless ``trainer_config``
            sets it).
        quantize: True trains LoRA on a 4-bit base (``peft.method=qlora``).
        quantization_config: dict of ``bnb_4bit_quant_type`` / ``bnb_4bit_use_double_quant`` /
            ``bnb_4bit_compute_dtype`` (or the short names), or ``{"load_in_8bit": True}`` (int8).
        trainer_config: a ``TrainConfig`` (the base config), a dict for ``update_config`` or a
            ``transformers.TrainingArguments`` (its mapped fields; any other set field is refused).
        inference_handler: a ``tunesmith.inference.handler.InferenceHandler``; default ``ChatInferenceHandler``.
        config: the base ``TrainConfig`` (default: the packaged defaults).
        verbosity: what training and evaluation show while they work: ``"info"`` (progress and
            status lines on stdout; the default the first time), ``"debug"`` (also the resolved
            plan and cache keys), ``"quiet"`` / ``"warning"`` (warnings and errors only, on stderr),
            ``"error"``, or a ``logging`` level; None keeps the level set earlier. It sets the
            ``tunesmith`` logger, so a program that configures ``logging`` itself can do the same.

    Example:
        ``tuner = FineTuner("smollm2-135m-instruct", dataset_name="arith", lora_r=8, max_length=256); tuner.config.peft.r, tuner.config.data.train`` -> ``(8, 'arith')``
    """

    def __init__(self, model_id: Any = None, device: Optional[str] = None, dataset_name: Optional[str] = None,
                 lora_r: int = 16, lora_alpha: int = 32, lora_target_modules: Optional[list[str]] = None,
                 lora_bias: str = "none", preprocessor: Any = None, lora_task_type: Any = None,
                 max_length: Optional[int] = None, quantize: bool = False,
                 quantization_config: Optional[dict[str, Any]] = None, trainer_config: Any = None,
                 inference_handler: Any = None, config: Optional[TrainConfig] = None,
                 verbosity: Any = None) -> None:
        from tunesmith.api.components import check_components
        from tunesmith.config.logs import set_verbosity

        set_verbosity(verbosity)  # a front door: the tunesmith logger shows progress lines from here on

        if isinstance(model_id, TrainConfig):
            if config is not None:
                raise ConfigError("FineTuner: give the TrainConfig once, either first or as config=")
            model_id, config = None, model_id
        if isinstance(trainer_config, TrainConfig):
            if config is not None:
                raise ConfigError("trainer_config: a TrainConfig here is the base config, but config= "
                                  "was given too; pass one of them")
            config, trainer_config = trainer_config, None
        updates = keyword_updates(model_id=model_id, device=device, dataset_name=dataset_name, lora_r=lora_r,
                                  lora_alpha=lora_alpha, lora_target_modules=lora_target_modules,
                                  lora_bias=lora_bias, lora_task_type=lora_task_type, max_length=max_length,
                                  quantize=quantize, quantization_config=quantization_config)
        if config is not None and not isinstance(config, TrainConfig):
            raise ConfigError(f"config: expected a TrainConfig, got {type(config).__name__}")
        cfg = config or load_config()
        extra = trainer_updates(trainer_config)
        if max_length is not None and _sets_key(extra, "eval.max_new_tokens"):
            del updates["eval.max_new_tokens"]  # trainer_config's own generation length wins
        for clash in disagreements(extra, updates):
            logger.warning("FineTuner: %s differ (trainer_config, then a keyword); the keyword is used", clash)
        if updates or extra:
            cfg = copy.deepcopy(cfg)  # the caller's config object stays as it was
            update_config(cfg, extra, source="trainer_config")
            update_config(cfg, updates, source="the FineTuner keywords")  # keywords win over trainer_config
        check_components(cfg)  # names, dotted paths and their arguments, before anything is loaded
        self._setup(cfg, preprocessor, inference_handler)

    def _setup(self, config: TrainConfig, preprocessor: Any, inference_handler: Any) -> None:
        from tunesmith.api.components import build_inference_handler, build_preprocessor
        from tunesmith.data.preprocessor import Preprocessor
        from tunesmith.inference.handler import InferenceHandler

        if preprocessor is not None and not isinstance(preprocessor, Preprocessor):
            raise ConfigError(f"preprocessor: {preprocessor!r} is not callable as "
                              "preprocessor(tokenizer, examples, task, settings)")
        if inference_handler is not None and not isinstance(inference_handler, InferenceHandler):
            raise ConfigError(f"inference_handler: {inference_handler!r} has no method "
                              "generate(model, tokenizer, prompts, settings)")
        self.config = config
        # Objects passed in win over the config's data.preprocessor / eval.inference_handler.
        self.preprocessor = preprocessor or build_preprocessor(config)
        self.inference_handler = inference_handler or build_inference_handler(config)
        for name, obj, protocol, needs in (
                ("data.preprocessor", self.preprocessor, Preprocessor, "__call__(tokenizer, examples, task, settings)"),
                ("eval.inference_handler", self.inference_handler, InferenceHandler,
                 "generate(model, tokenizer, prompts, settings)")):
            if not isinstance(obj, protocol):
                raise ConfigError(f"{name}: {obj!r} does not implement {needs}")
        self.model: Any = None
        self.tokenizer: Any = None
        self.task: Optional[str] = None  # decided with the tokenizer
        self.run_dir: Optional[Path] = None

    @classmethod
    def from_config(cls, config: TrainConfig) -> "FineTuner":
        return cls(config)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> "FineTuner":
        return cls(load_config(path, overrides))

    @classmethod
    def load(cls, run_dir: str | os.PathLike, device: Optional[str] = None, *, preprocessor: Any = None,
             inference_handler: Any = None) -> "FineTuner":
        """A tuner holding a saved run's model, tokenizer and config (the data need not exist here).

        Example:
            ``FineTuner.load("runs/arith").generate("Add 1 and 2.")`` -> ``'#### 3'``
        """
        from tunesmith.config.logs import set_verbosity
        from tunesmith.config.run_dir import RunDir
        from tunesmith.inference.runs import load_run

        set_verbosity(None)
        run = load_run(run_dir, device)
        tuner = cls.__new__(cls)
        tuner._setup(run.config, preprocessor, inference_handler)
        tuner.model, tuner.tokenizer, tuner.run_dir = run.model, run.tokenizer, run.run_dir
        task = RunDir(run.run_dir).read_record().get("task")
        tuner.task = task or (run.config.model.task if run.config.model.task != "auto" else None)
        return tuner

    # -- pieces -------------------------------------------------------------------------------
    def _runtime(self) -> tuple[str, str]:
        from tunesmith.api.model_setup import runtime

        return runtime(self.config)

    def _autocast(self, device: str, precision: str):
        from tunesmith.api.model_setup import autocast

        return autocast(device, precision)

    def _load_tokenizer(self) -> str:
        """Load the tokenizer (with the configured chat template) and decide the task (``self.task``)."""
        from tunesmith.api.model_setup import load_tokenizer_and_task

        self.tokenizer, self.task = load_tokenizer_and_task(self.config)
        return self.task

    def _ensure_tokenizer(self) -> str:
        """The task, loading the tokenizer only if this tuner has none yet."""
        if self.tokenizer is None or self.task is None:
            if self.model is not None and self.tokenizer is not None:  # loaded run: keep its tokenizer
                from tunesmith.api.model_setup import model_task

                self.task = model_task(self.config)
                return self.task
            return self._load_tokenizer()
        return self.task

    def _ensure_model(self) -> tuple[str, str, str]:
        """Task, device and precision; loads the base model lazily when nothing is trained or loaded."""
        task = self._ensure_tokenizer()
        device, precision = self._runtime()
        if self.model is None:
            self._load_model(task, device, precision, list(self.config.data.label_names))
        else:
            device = str(next(self.model.parameters()).device)
        return task, device, precision

    def _custom_preprocessor(self) -> Any:
        """The preprocessor to hand to ``build_datasets``; None for the default (which keeps the cache)."""
        from tunesmith.data.preprocessor import ChatTemplatePreprocessor

        return None if type(self.preprocessor) is ChatTemplatePreprocessor else self.preprocessor

    def _load_model(self, task: str, device: str, precision: str, label_names: list[str]) -> None:
        from tunesmith.api.model_setup import load_base_model

        self.model = load_base_model(self.config, self.tokenizer, task, device, precision, label_names)

    def preprocess_data(self) -> Any:
        """Load the tokenizer and build the tokenized datasets (a ``DataBundle``) without a model."""
        task = self._load_tokenizer()
        from tunesmith.api.data_entry import build_datasets

        return build_datasets(self.config.data, self.tokenizer, self.config.train.seed, task,
                              self._custom_preprocessor())

    def inspect_data(self, num_examples: int = 3, color: bool = False, png: Optional[Path] = None) -> dict[str, Any]:
        """What the model will be trained on: counts, lengths, padding waste and marked examples."""
        import dataclasses as dc

        from tunesmith.data.inspect import histogram_lines, histogram_png, padding_report, row_lengths, show_example
        from tunesmith.data.packing import ROW_PER_EXAMPLE_KINDS, ROW_PER_EXAMPLE_PACKINGS
        from tunesmith.api.data_entry import build_datasets

        task = self._load_tokenizer()
        data_cfg = dc.replace(self.config.data, packing="none")  # lengths per example, not per block
        bundle = build_datasets(data_cfg, self.tokenizer, self.config.train.seed, task, self._custom_preprocessor())
        if bundle.streamed:  # the first rows only: a stream is not read to its end to be inspected
            import itertools

            import datasets

            stream = bundle.train
            rows = list(itertools.islice(iter(stream), INSPECT_STREAM_ROWS))
            bundle.train, bundle.train_stats = datasets.Dataset.from_list(rows), stream.stats
            read = stream.progress()
            bundle.notes.append(f"data.streaming: inspected the first {len(rows)} training examples only "
                                f"({read['rows_read']} rows read, counted above as tokenized); the rest of "
                                "data.train is read while training")
        lengths = row_lengths(bundle.train)  # a pair: its longer side
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
        if bundle.info is not None and bundle.info.kind in ROW_PER_EXAMPLE_KINDS:  # pairs, prompts: no blocks
            report["padding"] = {k: v for k, v in report["padding"].items() if k in ROW_PER_EXAMPLE_PACKINGS}
        if png is not None:
            report["png"] = str(histogram_png(lengths, png, self.config.data.max_length))
        return report

    # -- the run ------------------------------------------------------------------------------
    def plan(self) -> Any:
        """What ``train`` will do (a ``ResolvedRun``: task, trainer, device, precision, packing),
        decided from the config and the model's config alone; no weights or data are loaded.

        Example:
            ``FineTuner("smollm2-135m-instruct", "cpu", dataset_name="arith").plan().packing`` -> ``<Packing.PADDING_FREE: 'padding_free'>``
        """
        from tunesmith.api.resolved_run import resolve_run

        return resolve_run(self.config)

    def train(self, output_dir: str | os.PathLike | None = None, num_train_epochs: Optional[float] = None) -> TrainResult:
        """Load, (evaluate the base model,) train, save, (evaluate the tuned model) and report.

        ``num_train_epochs`` replaces the config's length, the packaged 150-step limit included
        (``tunesmith.config.lengths``). Afterwards ``self.model`` / ``self.tokenizer`` hold the
        tuned model, ready for ``generate``. The steps are in ``tunesmith.api.train_job``.

        Example:
            ``FineTuner("smollm2-135m-instruct", dataset_name="arith").train("runs/a", num_train_epochs=2).run_dir`` -> ``PosixPath('runs/a')``
        """
        from tunesmith.api import train_job

        updates: dict[str, Any] = {}
        if output_dir is not None:
            updates["output_dir"] = str(output_dir)
        if num_train_epochs is not None:
            updates["num_train_epochs"] = num_train_epochs
        if updates:
            update_config(self.config, updates, source="train()")
        run = train_job.TrainingRun(self.config, self._custom_preprocessor())
        try:
            return train_job.run_training(run)
        finally:  # what the run loaded, tuned and wrote, for generate / evaluate / save
            if run.tokenizer is not None:
                self.tokenizer, self.task = run.tokenizer, run.task
            if run.model is not None:
                self.model = run.model
            if run.recorded:
                self.run_dir = run.run_dir

    # -- after training -----------------------------------------------------------------------
    def generate(self, prompt_text: str | list[str], max_length: Optional[int] = None) -> str | list[str]:
        """Answer a prompt (or a list) with the tuned model, else the base model (loaded on first use).

        Goes through ``self.inference_handler``; ``max_length`` is the number of new tokens
        (default ``eval.max_new_tokens``).

        Example:
            ``tuner.generate("Add 1 and 2.", max_length=16)`` -> ``'#### 3'``
        """
        from tunesmith.models.generation import GenerationSettings

        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ConfigError(f"max_length: must be a positive number of new tokens, got {max_length!r}")
        single = isinstance(prompt_text, str)
        prompts = [prompt_text] if single else list(prompt_text)
        if not all(isinstance(p, str) for p in prompts):
            raise ConfigError(f"prompt_text: expected a string or a list of strings, got {prompt_text!r}")
        _, device, precision = self._ensure_model()
        settings = GenerationSettings(max_new_tokens=max_length or self.config.eval.max_new_tokens)
        with self._autocast(device, precision):
            outputs = list(self.inference_handler.generate(self.model, self.tokenizer, prompts, settings))
        return outputs[0] if single else outputs

    __call__ = generate

    def evaluate(self, metric: Optional[str] = None, max_samples: Optional[int] = None) -> dict[str, Any]:
        """Held-out metrics of the current model (tuned, loaded, or else the base model).

        The metric is ``metric`` or ``eval.metric``; ``auto`` picks accuracy / macro F1 / MCC for
        classifiers, the dataset's own metric for built-in data, ROUGE-L for source/target data,
        exact match for data with reference answers (an ``answer`` column), else perplexity.
        ``result["metric"]`` names which and ``result["score"]`` is its headline number.

        Args:
            metric: a registered metric name or ``package.module:function``.
            max_samples: at most this many held-out examples (default: ``eval.max_samples`` when
                generating, all otherwise).

        Example:
            ``FineTuner.load("runs/arith").evaluate()["score"]`` -> ``0.69``
        """
        from tunesmith.api.held_out import evaluate_model
        from tunesmith.api.model_setup import ModelContext

        task, device, precision = self._ensure_model()
        return evaluate_model(ModelContext(self.config, self.model, self.tokenizer, task, device, precision,
                                           self._custom_preprocessor()), metric, max_samples)

    def save(self, output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the model (adapter or full weights), tokenizer, ``config.yaml`` and ``run.json``.

        The folder then works with ``FineTuner.load``, ``tunesmith generate`` and ``load_run``.

        Example:
            ``tuner.save("exports/arith")`` -> ``PosixPath('exports/arith')``
        """
        from tunesmith.config.run_dir import RunDir

        if self.model is None or self.tokenizer is None:
            raise RunDirError("save: there is no model yet; call train() (or generate()) first")
        path = Path(output_dir)
        same_run = self.run_dir is not None and path.resolve() == Path(self.run_dir).resolve()
        if path.exists() and any(path.iterdir()) and not (overwrite or same_run):
            raise RunDirError(f"save: {str(path)!r} is not empty; choose another folder or pass overwrite=True")
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        run = RunDir(path)
        run.save_config(self.config)
        run.write_record({"saved": datetime.now().isoformat(timespec="seconds"), "task": self.task,
                                "method": self.config.peft.method,
                                "trained_in": str(self.run_dir) if self.run_dir else None})
        return path


def _sets_key(updates: dict[str, Any], dotted: str) -> bool:
    """Whether an ``update_config`` dict sets ``dotted`` (``{"eval.max_new_tokens": 8}`` or
    ``{"eval": {"max_new_tokens": 8}}``)."""
    section, leaf = dotted.split(".", 1)
    nested = updates.get(section)
    return dotted in updates or (isinstance(nested, dict) and leaf in nested)
