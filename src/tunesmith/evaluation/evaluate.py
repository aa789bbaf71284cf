"""One held-out evaluation, whatever the metric: pick the metric, then run the evaluator it needs.

``metric_for_data`` names the metric that fits a task and its held-out data (the run uses it for
``eval.metric=auto``, ``tunesmith.api.choices.evaluation``);
``evaluate_held_out`` runs generation + scoring, classification or token loss accordingly and
returns one JSON-serializable dict with at least ``metric``, ``score`` and ``total``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from tunesmith.config.vocabulary import Task
from tunesmith.data.examples import Conversation, Seq2SeqExample
from tunesmith.errors import ConfigError, DataError
from tunesmith.evaluation.metrics import METRICS, Metric, resolve_metric
from tunesmith.models.generation import GenerationSettings

NO_HELD_OUT = ("there is no held-out data; set data.eval (a dataset) or data.eval_split (a fraction of "
               "data.train, e.g. 0.1)")


def settings_from_config(eval_cfg: Any, max_new_tokens: Optional[int] = None) -> GenerationSettings:
    """Generation settings from the ``eval`` config section: greedy unless ``eval.do_sample=true``."""
    return GenerationSettings(max_new_tokens=max_new_tokens or eval_cfg.max_new_tokens,
                              do_sample=eval_cfg.do_sample, temperature=eval_cfg.temperature,
                              top_p=eval_cfg.top_p)


def metric_for_data(task: str, data_name: Optional[str], held_out: Sequence[Any]) -> str:
    """The metric that fits the task and the held-out data: classifiers -> ``accuracy``; a built-in
    dataset -> its own metric; source/target (summarisation-style) data -> ``rouge_l``;
    conversations with a reference answer (e.g. an ``answer`` column) -> ``exact_match``; anything
    else -> ``perplexity``."""
    from tunesmith.data.builtin import BUILTIN_DATASETS
    from tunesmith.data.sources import is_builtin

    if task == Task.SEQUENCE_CLASSIFICATION:
        return "accuracy"
    if data_name and is_builtin(data_name):
        own = BUILTIN_DATASETS.get(data_name).metric
        if own in METRICS and METRICS.get(own).needs != "labels":
            return own
    if any(isinstance(e, Seq2SeqExample) for e in held_out):
        return "rouge_l"
    if any(isinstance(e, Conversation) and e.reference is not None for e in held_out):
        return "exact_match"
    return "perplexity"


def check_fits(metric: Metric, task: str) -> None:
    """Raise a ConfigError when ``metric`` cannot score a model of ``task``."""
    classifier = task == Task.SEQUENCE_CLASSIFICATION
    if classifier and metric.needs != "labels":
        labels = [n for n, m in METRICS.items() if m.needs == "labels"]
        raise ConfigError(f"eval.metric: '{metric.name}' needs {metric.needs.replace('_', ' ')}, but the model is a "
                          f"classifier; metrics for classifiers: {', '.join(labels)}")
    if not classifier and metric.needs == "labels":
        others = [n for n, m in METRICS.items() if m.needs != "labels"]
        raise ConfigError(f"eval.metric: '{metric.name}' scores a classifier's labels, but the model is {task}; "
                          f"metrics for it: {', '.join(others)}")


def evaluate_held_out(
    model: Any,
    tokenizer: Any,
    metric: Metric,
    task: str,
    *,
    held_out: Sequence[Any] = (),
    dataset: Any = None,
    label_names: Optional[Sequence[str]] = None,
    settings: Optional[GenerationSettings] = None,
    batch_size: int = 32,
    max_samples: Optional[int] = None,
    device: Any = None,
    autocast: Optional[Callable[[], Any]] = None,
    desc: Optional[str] = "Evaluating",
) -> dict[str, Any]:
    """Score ``model`` on the held-out set with ``metric``.

    Args:
        model, tokenizer: the model to score (plain or PEFT-wrapped) and its tokenizer.
        metric: from ``tunesmith.api.choices.evaluation.choose_metric``.
        task: ``causal_lm``, ``seq2seq`` or ``sequence_classification``.
        held_out: canonical held-out examples (for metrics computed from generations).
        dataset: the tokenized held-out set (for ``labels`` and ``token_loss`` metrics).
        label_names: class names by id (classifiers).
        settings: generation settings (default: greedy, 128 new tokens).
        batch_size: prompts or rows per forward pass.
        max_samples: at most this many examples (None: all).
        device: where the batches go (default: the model's device).
        autocast: optional factory of a mixed-precision context.
        desc: progress bar label.

    Returns:
        ``{"metric": "rouge_l", "score": 0.41, "total": 100, "samples": [...], "metric_label": "ROUGE-L",
        "percent": False, "higher_is_better": True, ...}``.

    Raises:
        DataError: the held-out set is missing or empty.
        ConfigError: the metric does not fit the task.
    """
    result = _evaluate(model, tokenizer, metric, task, held_out, dataset, label_names, settings, batch_size,
                       max_samples, device, autocast, desc)
    # Self-describing results: reports show them without looking the metric up again.
    result.update(metric_label=metric.label, percent=metric.percent, higher_is_better=metric.higher_is_better)
    return result


def _evaluate(model: Any, tokenizer: Any, metric: Metric, task: str, held_out: Sequence[Any], dataset: Any,
              label_names: Optional[Sequence[str]], settings: Optional[GenerationSettings], batch_size: int,
              max_samples: Optional[int], device: Any, autocast: Optional[Callable[[], Any]],
              desc: Optional[str]) -> dict[str, Any]:
    from tunesmith.evaluation.classification import autocast_context

    check_fits(metric, task)
    if metric.needs == "generations":
        from tunesmith.evaluation.generation import evaluate_generation, prompt_items

        items = prompt_items(list(held_out), max_samples)
        if not items:
            raise DataError(f"eval.metric={metric.name}: {NO_HELD_OUT}")
        with autocast_context(autocast):
            return evaluate_generation(model, tokenizer, items, metric, settings or GenerationSettings(),
                                       batch_size, desc)
    if dataset is None or len(dataset) == 0:
        raise DataError(f"eval.metric={metric.name}: {NO_HELD_OUT}")
    if max_samples is not None and max_samples < len(dataset):
        dataset = dataset.select(range(max_samples))
    from tunesmith.data.collators import build_collator, collator_for_task

    collator = build_collator(collator_for_task(task), task, tokenizer, "none",
                              str(device) if device is not None else "cpu")
    if metric.needs == "labels":
        return _labels(model, dataset, collator, metric, batch_size, label_names, device, autocast, desc)
    return _token_loss(model, dataset, collator, task, batch_size, device, autocast, desc)


def _labels(model: Any, dataset: Any, collator: Any, metric: Metric, batch_size: int,
            label_names: Optional[Sequence[str]], device: Any, autocast: Any, desc: Optional[str]) -> dict[str, Any]:
    """Classification metrics, plus a registered label metric's own score when one is chosen."""
    from tunesmith.evaluation.classification import evaluate_classification

    result = evaluate_classification(model, dataset, collator, batch_size, label_names or None, device, autocast,
                                     desc or "Evaluating", return_predictions=metric.compute is not None)
    result["metric"] = metric.name
    result["score"] = result["accuracy"]
    if metric.compute is not None:
        predictions = result.pop("predictions")
        scored = metric.score(predictions["predicted"], predictions["label"])
        scored.pop("per_example", None)
        scored.pop("binary", None)
        result.update({f"{metric.name}_{k}" if k != "score" else k: v for k, v in scored.items()})
    return result


def _token_loss(model: Any, dataset: Any, collator: Any, task: str, batch_size: int, device: Any, autocast: Any,
                desc: Optional[str]) -> dict[str, Any]:
    """Mean loss per reference token and perplexity (decoder-only or encoder-decoder)."""
    from tunesmith.evaluation.language_model import evaluate_perplexity, evaluate_seq2seq_loss

    if task == Task.SEQ2SEQ:
        result = evaluate_seq2seq_loss(model, dataset, collator, batch_size, device, autocast)
    else:
        result = evaluate_perplexity(model, dataset, collator, batch_size, device, autocast, desc or "Perplexity")
    return {"metric": "perplexity", "score": result["perplexity"], "total": len(dataset), **result}
