"""Predictions of a sequence classifier: the label, its probability and every class's probability.

Texts are tokenized by the same code as training (``tokenize_examples`` on ``ClassificationExample``),
so a sentence pair is joined exactly as it was for training.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from tunesmith.data.examples import ClassificationExample
from tunesmith.errors import DataError, ModelError

__all__ = ["ClassifierInferenceHandler", "is_classifier", "predict_labels"]


def is_classifier(model: Any) -> bool:
    """True for a sequence-classification model, also through a PEFT wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return type(base).__name__.endswith("ForSequenceClassification")


def predict_labels(model: Any, tokenizer: Any, texts: Sequence[str], pairs: Optional[Sequence[Optional[str]]] = None,
                   max_length: int = 512, batch_size: int = 32) -> list[dict[str, Any]]:
    """Classify each text (or text pair).

    ``predict_labels(model, tok, ["A wonderful film."])`` ->
    ``[{"label": "positive", "confidence": 0.97, "scores": {"negative": 0.03, "positive": 0.97}}]``.

    Args:
        model: a sequence classifier (plain or PEFT-wrapped); label names come from its ``id2label``.
        tokenizer: its tokenizer.
        texts: the texts to classify.
        pairs: a second text per input for sentence-pair classifiers (None entries for none).
        max_length: tokens per input; longer inputs are cut at the end, as in training.
        batch_size: inputs per forward pass.

    Raises:
        ModelError: the model is not a classifier.
        DataError: a text is not a string, or ``pairs`` has a different length.
    """
    import torch

    from tunesmith.config.vocabulary import Task
    from tunesmith.data.collators import build_collator, collator_for_task
    from tunesmith.data.tokenize import TokenizeSettings, tokenize_examples

    if not is_classifier(model):
        raise ModelError(f"predict: {type(model).__name__} is not a sequence classifier; use generate for "
                         "language models")
    pairs = list(pairs) if pairs is not None else [None] * len(texts)
    if len(pairs) != len(texts):
        raise DataError(f"predict: {len(texts)} texts but {len(pairs)} second texts (pairs)")
    for i, (text, pair) in enumerate(zip(texts, pairs)):
        if not isinstance(text, str) or (pair is not None and not isinstance(pair, str)):
            raise DataError(f"predict: input {i}: expected text as a string, got {text!r} / {pair!r}")
    if not texts:
        return []
    examples = [ClassificationExample(t, 0, p, where=f"input {i}") for i, (t, p) in enumerate(zip(texts, pairs))]
    # min_length 0: every input gets a prediction, however short (training may drop short ones).
    rows, _ = tokenize_examples(tokenizer, examples, "sequence_classification",
                                TokenizeSettings(max_length=max_length, truncation="truncate_end"), desc=None)
    if len(rows) != len(texts):
        raise DataError(f"predict: {len(texts) - len(rows)} of {len(texts)} inputs could not be tokenized")
    device = next(model.parameters()).device
    task = Task.SEQUENCE_CLASSIFICATION
    collator = build_collator(collator_for_task(task), task, tokenizer, "none", str(device))
    id2label = getattr(model.config, "id2label", None) or {}
    out: list[dict[str, Any]] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                batch = collator([{k: v for k, v in r.items() if k not in ("label", "labels")}
                                  for r in rows[start:start + batch_size]])
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
                probs = logits.float().softmax(dim=-1)  # fp32: bf16 probabilities are too coarse to show
                for row in probs.tolist():
                    names = [str(id2label.get(i, i)) for i in range(len(row))]
                    best = max(range(len(row)), key=row.__getitem__)
                    out.append({"label": names[best], "confidence": row[best], "scores": dict(zip(names, row))})
    finally:
        model.train(was_training)
    return out


class ClassifierInferenceHandler:
    """An ``InferenceHandler`` for classifiers: ``generate`` answers each prompt with its label name.

    Args:
        max_length: tokens per input (longer ones are cut at the end).
        batch_size: inputs per forward pass.

    Example:
        ``ClassifierInferenceHandler().generate(model, tokenizer, ["A wonderful film."], GenerationSettings())`` -> ``['positive']``
        ``ClassifierInferenceHandler().predict(model, tokenizer, ["A dull film."])[0]["label"]`` -> ``'negative'``
    """

    def __init__(self, max_length: int = 512, batch_size: int = 32) -> None:
        self.max_length = max_length
        self.batch_size = batch_size

    def generate(self, model: Any, tokenizer: Any, prompts: list[str], settings: Any = None) -> list[str]:
        """The predicted label name of each prompt (``settings`` is not used: nothing is generated)."""
        return [p["label"] for p in self.predict(model, tokenizer, prompts)]

    def predict(self, model: Any, tokenizer: Any, texts: Sequence[str],
                pairs: Optional[Sequence[Optional[str]]] = None) -> list[dict[str, Any]]:
        """``predict_labels`` with this handler's settings."""
        return predict_labels(model, tokenizer, texts, pairs, self.max_length, self.batch_size)
