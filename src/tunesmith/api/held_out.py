"""Held-out measurements: which before/after comparison a run makes, and ``FineTuner.evaluate``."""

from __future__ import annotations

import logging
from typing import Any, Optional

from tunesmith.api.model_setup import ModelContext
from tunesmith.config.vocabulary import Task
from tunesmith.config import TrainConfig

logger = logging.getLogger(__name__)

NO_HELD_OUT = ("evaluate: there is no held-out data; set data.eval (a dataset) or "
               "data.eval_split (a fraction of data.train, e.g. 0.1)")


def before_after_metric(cfg: TrainConfig, task: str, bundle: Any) -> Optional[Any]:
    """The metric a run scores the base and the tuned model with, or None for no comparison.

    ``eval.before_after=auto`` compares for built-in datasets and classifiers, ``on`` always
    (failing without held-out data), ``off`` never; ``eval.metric`` picks the metric.
    """
    from tunesmith.data.sources import is_builtin
    from tunesmith.errors import DataError
    from tunesmith.api.choices.evaluation import choose_metric
    from tunesmith.evaluation.generation import prompt_items

    mode = cfg.eval.before_after
    name = cfg.data.eval or cfg.data.train
    if mode == "off" or (mode == "auto" and not (task == Task.SEQUENCE_CLASSIFICATION or is_builtin(name))):
        return None
    metric = choose_metric(cfg.eval.metric, task, name, bundle.held_out)
    has_data = bool(prompt_items(bundle.held_out, 1)) if metric.needs == "generations" else bundle.eval is not None
    if not has_data:
        if mode == "on":
            raise DataError(f"eval.before_after=on: {NO_HELD_OUT.removeprefix('evaluate: ')}")
        return None
    return metric


def held_out_metrics(ctx: ModelContext, metric: Any, desc: str, bundle: Any) -> dict[str, Any]:
    """``ctx.model`` scored with ``metric`` on the run's held-out set (generation capped at eval.max_samples)."""
    from tunesmith.evaluation.evaluate import evaluate_held_out, settings_from_config

    cfg = ctx.config
    return evaluate_held_out(
        ctx.model, ctx.tokenizer, metric, ctx.task, held_out=bundle.held_out, dataset=bundle.eval,
        label_names=bundle.label_names or None, settings=settings_from_config(cfg.eval),
        batch_size=cfg.eval.batch_size, max_samples=cfg.eval.max_samples if metric.needs == "generations" else None,
        device=ctx.device, autocast=ctx.autocast, desc=desc)


def evaluate_model(ctx: ModelContext, metric: Optional[str] = None, max_samples: Optional[int] = None) -> dict[str, Any]:
    """``FineTuner.evaluate``: ``eval.metric`` (or ``metric``) of ``ctx.model`` on the held-out set.

    Generation metrics read the held-out examples only; the others tokenize them (cached).
    """
    from tunesmith.api.data_entry import build_datasets, load_conversations
    from tunesmith.errors import DataError
    from tunesmith.api.choices.evaluation import choose_metric
    from tunesmith.evaluation.evaluate import evaluate_held_out, settings_from_config

    cfg, task = ctx.config, ctx.task
    if cfg.eval.do_sample:
        from transformers import set_seed

        set_seed(cfg.train.seed)  # sampled answers repeat from one evaluation to the next
    _, held_out = load_conversations(cfg.data, cfg.train.seed, ctx.tokenizer)
    if held_out and type(held_out[0]).__name__ == "PreferenceExample":
        return _with_pair_measures(ctx, metric, max_samples, held_out)
    chosen = choose_metric(metric or cfg.eval.metric, task, cfg.data.eval or cfg.data.train, held_out)
    bundle = None
    if chosen.needs != "generations":
        bundle = build_datasets(cfg.data, ctx.tokenizer, cfg.train.seed, task, ctx.preprocessor)
        if bundle.eval is None or len(bundle.eval) == 0:
            raise DataError(NO_HELD_OUT)
    elif not held_out:
        raise DataError(NO_HELD_OUT)
    limit = max_samples or (cfg.eval.max_samples if chosen.needs == "generations" else None)
    has_bundle = bundle is not None  # (a bundle's truth is its training set's length)
    return evaluate_held_out(
        ctx.model, ctx.tokenizer, chosen, task, held_out=held_out, dataset=bundle.eval if has_bundle else None,
        label_names=(bundle.label_names if has_bundle else None) or list(cfg.data.label_names) or None,
        settings=settings_from_config(cfg.eval), batch_size=cfg.eval.batch_size, max_samples=limit,
        device=ctx.device, autocast=ctx.autocast, desc="Evaluating")


def _with_pair_measures(ctx: ModelContext, metric: Optional[str], max_samples: Optional[int],
                        held_out: list[Any]) -> dict[str, Any]:
    """Held-out chosen / rejected pairs: their measures (``api.pair_measures.evaluate_pairs``), next to
    the generation metric when the pairs have reference answers (a reward model: the measures alone)."""
    from tunesmith.api.pair_measures import describe_pairs, evaluate_pairs
    from tunesmith.api.data_entry import build_datasets
    from tunesmith.errors import DataError

    bundle = build_datasets(ctx.config.data, ctx.tokenizer, ctx.config.train.seed, ctx.task, ctx.preprocessor)
    if bundle.eval is None or len(bundle.eval) == 0:
        raise DataError(NO_HELD_OUT)
    pairs = evaluate_pairs(ctx, bundle.eval)
    logger.info(describe_pairs(pairs))
    has_answers = any(getattr(e, "reference", None) is not None for e in held_out)
    if ctx.task == Task.CAUSAL_LM and has_answers and (metric or ctx.config.eval.metric) != "pair_accuracy":
        from tunesmith.api.choices.evaluation import choose_metric
        from tunesmith.evaluation.evaluate import evaluate_held_out, settings_from_config

        cfg = ctx.config
        chosen = choose_metric(metric or cfg.eval.metric, ctx.task, cfg.data.eval or cfg.data.train, held_out)
        if chosen.needs == "generations":
            result = evaluate_held_out(
                ctx.model, ctx.tokenizer, chosen, ctx.task, held_out=held_out, dataset=None, label_names=None,
                settings=settings_from_config(cfg.eval), batch_size=cfg.eval.batch_size,
                max_samples=max_samples or cfg.eval.max_samples, device=ctx.device, autocast=ctx.autocast,
                desc="Evaluating")
            return {**result, **pairs}
    return {"metric": "pair_accuracy", "metric_label": "chosen preferred", "percent": True,
            "score": pairs["pair_accuracy"], **pairs}


def unlearning_metrics(ctx: ModelContext, forget: Any, retain: Any, desc: str) -> dict[str, Any]:
    """Mean loss per trained token (nats) of ``ctx.model`` on the forget and the retain sets.

    ``forget`` / ``retain`` are ``DataBundle``s: ``*_loss`` is measured on the training examples,
    ``*_held_out_loss`` on their held-out sets (a built-in's test split asks the same facts in other
    words). Unlearning should raise the forget losses and keep the retain losses close.
    """
    from tunesmith.api.choices.batching import build_collator
    from tunesmith.evaluation.language_model import evaluate_perplexity

    collator = build_collator("auto", "causal_lm", ctx.tokenizer, "none", ctx.device)
    result: dict[str, Any] = {"metric": "forget_loss"}
    for side, bundle in (("forget", forget), ("retain", retain)):
        for suffix, dataset in (("loss", bundle.train), ("held_out_loss", bundle.eval)):
            if dataset is not None and len(dataset):
                measured = evaluate_perplexity(ctx.model, dataset, collator, ctx.config.eval.batch_size, ctx.device,
                                               ctx.autocast, f"{desc} ({side})")
                result[f"{side}_{suffix}"] = measured["loss"]
    result["score"] = result["forget_loss"]
    return result
