"""The held-out metric: ``eval.metric`` with ``auto`` replaced by the one that fits the task and the
data (``tunesmith.evaluation.evaluate.metric_for_data``)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from tunesmith.config.vocabulary import is_auto


def choose_metric(name: str, task: str, data_name: Optional[str], held_out: Sequence[Any]) -> Any:
    """The metric ``eval.metric`` names, or for ``auto`` the one that fits the task and the data.

    auto: classifiers -> ``accuracy``; a built-in dataset -> its own metric; source/target
    (summarisation-style) data -> ``rouge_l``; conversations with a reference answer (e.g. an
    ``answer`` column) -> ``exact_match``; anything else -> ``perplexity``.

    Raises:
        ConfigError: the metric does not fit the task (e.g. ``accuracy`` for a causal LM).
    """
    from tunesmith.evaluation.evaluate import check_fits, metric_for_data
    from tunesmith.evaluation.metrics import resolve_metric

    metric = resolve_metric(metric_for_data(task, data_name, held_out) if is_auto(name) else name)
    check_fits(metric, task)
    return metric
