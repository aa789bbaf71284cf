"""ROUGE-L (longest common subsequence F-measure) for summaries and other free-text answers.

Scored with Google's ``rouge-score`` package (the implementation behind most published ROUGE
numbers), with Porter stemming so that "runs" and "running" match.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from tunesmith.errors import ConfigError


@lru_cache(maxsize=1)
def _scorer() -> Any:
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise ConfigError("eval.metric=rouge_l needs the rouge-score package: pip install rouge-score") from None
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> dict[str, float]:
    """Precision, recall and F-measure of the longest common subsequence of words.

    ``rouge_l("the cat sat on the mat", "a cat sat on mats")`` ->
    ``{"precision": 0.667, "recall": 0.8, "f": 0.727}`` (rounded here): 4 words in common
    ("cat sat on mat", mats stemmed to mat) of 6 predicted and 5 reference words.
    """
    # rouge-score takes (target, prediction): recall is measured against the target.
    score = _scorer().score(reference, prediction)["rougeL"]
    return {"precision": score.precision, "recall": score.recall, "f": score.fmeasure}


def rouge_l_scores(predictions: list[str], references: list[str]) -> dict[str, Any]:
    """Mean ROUGE-L F-measure (``score``), precision and recall, and the F-measure of each example."""
    scores = [rouge_l(p, r) for p, r in zip(predictions, references)]
    n = max(len(scores), 1)
    return {
        "score": sum(s["f"] for s in scores) / n,
        "precision": sum(s["precision"] for s in scores) / n,
        "recall": sum(s["recall"] for s in scores) / n,
        "per_example": [s["f"] for s in scores],
    }
