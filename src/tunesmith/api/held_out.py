"""Held-out measurements: which before/after comparison a run makes, and ``FineTuner.evaluate``."""

from __future__ import annotations

from typing import Any, Optional

NO_HELD_OUT = ("evaluate: there is no held-out data; set data.eval (a dataset) or "
               "data.eval_split (a fraction of data.train, e.g. 0.1)")


def before_after_metric(tuner: Any, task: str, bundle: Any) -> Optional[str]:
    """Which held-out comparison of base and tuned model a run makes: exact_match, accuracy or None."""
    from tunesmith.data.builtin import BUILTIN_DATASETS
    from tunesmith.data.sources import is_builtin

    mode = tuner.config.eval.before_after
    if mode == "off":
        return None
    if task == "sequence_classification":
        return "accuracy" if bundle.eval is not None else None  # one cheap pass over the eval set
    if task != "causal_lm":
        return None
    name = tuner.config.data.eval or tuner.config.data.train
    builtin_exact = is_builtin(name) and BUILTIN_DATASETS.get(name).metric == "exact_match"
    return "exact_match" if mode == "on" or builtin_exact else None


def held_out_metrics(tuner: Any, metric: str, desc: str, device: str, precision: str, task: str, bundle: Any,
                     conversations: list) -> dict[str, Any]:
    """Exact match by generation, or classification metrics, of ``tuner.model`` on the held-out set."""
    if metric == "accuracy":
        from tunesmith.data.collators import build_collator
        from tunesmith.evaluation.classification import evaluate_classification

        collator = build_collator("auto", task, tuner.tokenizer, "none", device)
        return evaluate_classification(tuner.model, bundle.eval, collator, tuner.config.eval.batch_size,
                                       bundle.label_names or None, device,
                                       lambda: tuner._autocast(device, precision), desc)
    from tunesmith.evaluation.exact_match import evaluate_exact_match
    from tunesmith.models.generation import GenerationSettings

    settings = GenerationSettings(max_new_tokens=tuner.config.eval.max_new_tokens)
    with tuner._autocast(device, precision):
        result = evaluate_exact_match(tuner.model, tuner.tokenizer, conversations, settings,
                                      tuner.config.eval.batch_size, desc)
    return result.to_dict()


def evaluate_model(tuner: Any) -> dict[str, Any]:
    """``FineTuner.evaluate``: the metric that fits the task and data, on the held-out set."""
    from tunesmith.data.builtin import BUILTIN_DATASETS
    from tunesmith.data.pipeline import build_datasets, eval_conversations, load_conversations
    from tunesmith.data.sources import is_builtin
    from tunesmith.errors import DataError

    task, device, precision = tuner._ensure_model()
    cfg = tuner.config
    if task == "causal_lm":
        name = cfg.data.eval or cfg.data.train
        builtin_exact = is_builtin(name) and BUILTIN_DATASETS.get(name).metric == "exact_match"
        _, held_out = load_conversations(cfg.data, cfg.train.seed)
        has_references = any(getattr(c, "reference", None) is not None for c in held_out)
        if builtin_exact or has_references or cfg.eval.before_after == "on":
            conversations = eval_conversations(held_out, cfg.eval.max_samples)
            if not conversations:
                raise DataError(NO_HELD_OUT)
            result = held_out_metrics(tuner, "exact_match", "Evaluating", device, precision, task, None,
                                      conversations)
            return {"metric": "exact_match", **result}
    bundle = build_datasets(cfg.data, tuner.tokenizer, cfg.train.seed, task, tuner._custom_preprocessor())
    if bundle.eval is None or len(bundle.eval) == 0:
        raise DataError(NO_HELD_OUT)
    if task == "sequence_classification":
        result = held_out_metrics(tuner, "accuracy", "Evaluating", device, precision, task, bundle, [])
        return {"metric": "accuracy", **result}
    from tunesmith.data.collators import build_collator

    collator = build_collator("auto", task, tuner.tokenizer, "none", device)
    autocast = lambda: tuner._autocast(device, precision)  # noqa: E731
    if task == "seq2seq":
        from tunesmith.evaluation.language_model import evaluate_seq2seq_loss

        return {"metric": "loss", **evaluate_seq2seq_loss(tuner.model, bundle.eval, collator,
                                                          cfg.eval.batch_size, device, autocast)}
    from tunesmith.evaluation.language_model import evaluate_perplexity

    result = evaluate_perplexity(tuner.model, bundle.eval, collator, cfg.eval.batch_size, device, autocast)
    return {"metric": "perplexity", **result}
