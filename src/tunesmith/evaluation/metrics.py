"""The metrics registry: every held-out metric by name (``eval.metric``), built-in or the user's own.

A metric says what the model must produce for it (``needs``) and, for metrics computed from text,
how to score it:

- ``generations``: answers generated from the held-out prompts, scored against reference answers
  (``exact_match``, ``rouge_l``, or one of yours);
- ``labels``: predicted class names of a classifier against the true names (``accuracy`` gives
  accuracy, macro F1, MCC and the confusion matrix; a registered one adds its own score);
- ``token_loss``: the mean loss of the reference tokens (``perplexity``); nothing is generated.

Add your own in one file and name it in the config (``eval.metric=contains``, or
``eval.metric=mypkg.metrics:contains`` without registering)::

    from tunesmith.evaluation.metrics import register_metric

    @register_metric("contains", label="contains the answer")
    def contains(predictions, references):
        return [ref.lower() in pred.lower() for pred, ref in zip(predictions, references)]

The function returns one score per example (bools or floats; the result is their mean) or a dict
with at least ``"score"`` (for corpus-level metrics), plus any extra numbers to keep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional, Sequence

from tunesmith.errors import ConfigError, DataError
from tunesmith.registry import Registry

Needs = Literal["generations", "labels", "token_loss"]
ScoreFn = Callable[[list[str], list[str]], Any]


@dataclass(frozen=True)
class Metric:
    """One registered metric.

    Attributes:
        name: the registered name (``eval.metric``).
        needs: what the model must produce: ``generations``, ``labels`` or ``token_loss``.
        compute: ``(predictions, references) -> per-example scores | {"score": ..., ...}``;
            None for the built-in ``accuracy`` and ``perplexity``, which have their own evaluators.
        label: how reports name it (``"exact match"``, ``"ROUGE-L"``).
        higher_is_better: False for losses and perplexity.
        percent: show the score as a percentage (scores in [0, 1]).
    """

    name: str
    needs: Needs
    compute: Optional[ScoreFn] = None
    label: str = ""
    higher_is_better: bool = True
    percent: bool = False

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
        """``{"score": mean, "per_example": [...], "binary": True}`` (or the compute function's own dict).

        ``binary`` says the per-example scores were bools (right or wrong answers).

        Raises:
            DataError: the lengths differ, there is nothing to score, or compute returned junk.
        """
        if self.compute is None:
            raise ConfigError(f"eval.metric: '{self.name}' is computed by its own evaluator, not from text")
        predictions, references = list(predictions), list(references)
        if len(predictions) != len(references):
            raise DataError(f"{self.name}: {len(predictions)} predictions but {len(references)} references")
        if not predictions:
            raise DataError(f"{self.name}: there are no examples to score")
        out = self.compute(predictions, references)
        if isinstance(out, dict):
            if "score" not in out:
                raise DataError(f"metric '{self.name}' returned a dict without 'score': keys {sorted(out)}")
            result = dict(out)
            result["score"] = _number(result["score"], self.name)
            raw = result.get("per_example")
        else:
            raw = list(out)
            result = {"score": sum(_number(s, self.name) for s in raw) / max(len(raw), 1)}
        if raw is not None:
            if len(raw) != len(predictions):
                raise DataError(f"metric '{self.name}' returned {len(raw)} scores for {len(predictions)} examples")
            result["per_example"] = [_number(s, self.name) for s in raw]
            # Right-or-wrong metrics (bools) are also reported as a count of correct answers.
            result["binary"] = all(isinstance(s, bool) for s in raw)
        return result


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"metric '{name}' returned {value!r}; expected a number (or a bool)") from None
    if math.isnan(number):
        raise DataError(f"metric '{name}' returned NaN")
    return number


METRICS: Registry[Metric] = Registry("metric", key="eval.metric")


def register_metric(name: str, *, needs: Needs = "generations", label: str = "", higher_is_better: bool = True,
                    percent: bool = False, overwrite: bool = False) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator: register ``fn(predictions, references)`` as metric ``name`` (see the module docstring).

    Args:
        name: the name for ``eval.metric``.
        needs: ``generations`` (default) or ``labels`` (a classifier's predicted class names).
        label: how reports and the terminal name it (default: the name).
        higher_is_better: False for error rates and distances.
        percent: show the score as a percentage.
        overwrite: replace a metric already registered under ``name``.

    Raises:
        ConfigError: ``needs`` is not one a function can serve, or the name is taken.
    """
    if needs not in ("generations", "labels"):
        raise ConfigError(f"register_metric('{name}'): needs={needs!r} is not allowed; a scoring function "
                          "works on 'generations' or 'labels'")

    def add(fn: ScoreFn) -> ScoreFn:
        METRICS.register(name, Metric(name, needs, fn, label or name, higher_is_better, percent),
                         overwrite=overwrite)
        return fn

    return add


def resolve_metric(value: Any) -> Metric:
    """A ``Metric`` from a registered name, a ``package.module:function`` path or a ``Metric``.

    A dotted path to a plain function makes a ``generations`` metric named after the path.
    """
    if isinstance(value, Metric):
        return value
    found = METRICS.get(value)  # registered names; dotted paths where the registry imports them
    if isinstance(found, Metric):
        return found
    if callable(found):
        return Metric(str(value), "generations", found, str(value).rsplit(":", 1)[-1])
    raise ConfigError(f"eval.metric: {value!r} is neither a registered metric nor a scoring function")


def metric_label(name: str) -> str:
    """How reports name a metric: ``"exact_match"`` -> ``"exact match"`` (the name itself if unknown)."""
    return METRICS.get(name).label if name in METRICS else str(name)


def format_value(name: str, value: float, signed: bool = False) -> str:
    """``format_value("exact_match", 0.69)`` -> ``"69.0%"``; ``format_value("rouge_l", 0.4123)`` -> ``"0.4123"``."""
    percent = METRICS.get(name).percent if name in METRICS else False
    sign = "+" if signed else ""
    return f"{value:{sign}.1%}" if percent else f"{value:{sign}.4g}"


def format_score(result: dict[str, Any]) -> str:
    """One line for the terminal, e.g. ``"exact match 69.0% (69/100)"`` or ``"perplexity 3.21 (loss 1.166)"``.

    ``result`` is what an evaluator returned: it holds ``metric`` and ``score`` and, depending on
    the metric, ``correct`` / ``total`` or ``loss``.
    """
    name = str(result.get("metric", "score"))
    label, value = metric_label(name), format_value(name, result["score"])
    if "correct" in result and "total" in result:
        value += f" ({result['correct']}/{result['total']})"
    elif "loss" in result and result.get("metric") == "perplexity":
        value += f" (loss {result['loss']:.4f})"
    elif "total" in result:
        value += f" over {result['total']} examples"
    return f"{label} {value}"


def _register_builtins() -> None:
    """exact_match and rouge_l score text; accuracy and perplexity have their own evaluators."""
    from tunesmith.evaluation.exact_match import score_exact_match
    from tunesmith.evaluation.rouge import rouge_l_scores

    METRICS.register("exact_match", Metric("exact_match", "generations", score_exact_match, "exact match",
                                           percent=True))
    METRICS.register("rouge_l", Metric("rouge_l", "generations", rouge_l_scores, "ROUGE-L"))
    METRICS.register("accuracy", Metric("accuracy", "labels", None, "accuracy", percent=True))
    METRICS.register("perplexity", Metric("perplexity", "token_loss", None, "perplexity", higher_is_better=False))


_register_builtins()
