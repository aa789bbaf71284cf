"""Sequence classification: accuracy, macro F1, MCC, per-class scores and a confusion matrix.

`evaluate_classification` runs the model over a tokenized held-out set (rows with ``input_ids``,
optional ``attention_mask`` / ``token_type_ids`` and an int ``labels``), batch by batch, and
scores the arg-max predictions with `classification_metrics`. `format_confusion_matrix` prints
the matrix for the terminal. torch and scikit-learn are imported inside the functions so that
importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional, Sequence

from tunesmith.errors import DataError, ModelError


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int],
                           label_names: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Scores of class-id predictions against references.

    ``classification_metrics([0, 1, 1], [0, 1, 0], ["neg", "pos"])`` ->
    ``{"accuracy": 0.667, "macro_f1": 0.667, "mcc": 0.5, "total": 3, "correct": 2,
    "confusion_matrix": {"labels": ["neg", "pos"], "matrix": [[1, 0], [1, 1]]},
    "per_class": {"neg": {"precision": 0.5, "recall": 1.0, "f1": 0.667, "support": 1,
    "predicted": 2}, ...}}`` (values rounded here, not in the result).

    Matrix rows are true classes and columns predicted ones. A class that is never predicted
    gets precision 0 rather than an error. Macro F1 averages over the classes that occur in
    the references or the predictions (scikit-learn's default): a class absent from both says
    nothing about the model and would otherwise pull the average down by a fixed 0.

    Args:
        y_true: Reference class ids.
        y_pred: Predicted class ids, same length.
        label_names: Name of each class id; ``None`` names them ``"0"``, ``"1"``, ...

    Returns:
        A JSON-serializable dict of plain floats, ints, lists and dicts.

    Raises:
        DataError: Lengths differ, there are no examples, or an id has no name.
    """
    from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, matthews_corrcoef,
                                 precision_recall_fscore_support)

    y_true = [int(y) for y in y_true]
    y_pred = [int(y) for y in y_pred]
    if len(y_true) != len(y_pred):
        raise DataError(f"classification metrics: {len(y_true)} references but {len(y_pred)} predictions")
    if not y_true:
        raise DataError("classification metrics: there are no examples to score")
    if label_names is None:
        label_names = [str(i) for i in range(max(y_true + y_pred) + 1)]
    names = [str(n) for n in label_names]
    bad = sorted({y for y in y_true + y_pred if not 0 <= y < len(names)})
    if bad:
        raise DataError(f"classification metrics: class ids {bad} have no name; "
                        f"label_names has {len(names)} entries: {names}")

    ids = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, average=None, zero_division=0)
    matrix = confusion_matrix(y_true, y_pred, labels=ids)
    present = sorted(set(y_true) | set(y_pred))
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),  # how many references have this class
            "predicted": int(matrix[:, i].sum()),  # how many predictions chose it
        }
        for i, name in enumerate(names)
    }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
        "total": len(y_true),
        "correct": sum(t == p for t, p in zip(y_true, y_pred)),
        "per_class": per_class,
        "confusion_matrix": {"labels": names, "matrix": matrix.astype(int).tolist()},
    }


def format_confusion_matrix(metrics: dict[str, Any]) -> str:
    """An aligned text table of ``metrics["confusion_matrix"]``: rows true, columns predicted.

    ``{"confusion_matrix": {"labels": ["neg", "pos"], "matrix": [[5, 1], [0, 12]]}}`` ->::

        true \\ pred  neg  pos
                 neg    5    1
                 pos    0   12
    """
    cm = metrics["confusion_matrix"]
    names, matrix = [str(n) for n in cm["labels"]], cm["matrix"]
    corner = "true \\ pred"
    first = max([len(corner)] + [len(n) for n in names])
    counts = [str(c) for row in matrix for c in row]
    # One width for every count column keeps the columns straight whatever the label lengths.
    width = max([len(n) for n in names] + [len(c) for c in counts] + [1])
    lines = [corner.ljust(first) + "".join(f"  {n:>{width}}" for n in names)]
    for name, row in zip(names, matrix):
        lines.append(name.rjust(first) + "".join(f"  {c:>{width}}" for c in row))
    return "\n".join(lines)


def model_device(model: Any) -> Any:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    import torch

    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def collated_batches(dataset: Any, collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
                     batch_size: int, device: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(first_row_index, batch)`` with every tensor of the batch on ``device``.

    ``dataset`` is a ``datasets.Dataset`` (whose slices are column dicts) or a list of row dicts.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, len(dataset), batch_size):
        chunk = dataset[start:start + batch_size]
        if isinstance(chunk, dict):  # datasets.Dataset slice: columns -> rows
            rows = [dict(zip(chunk, values)) for values in zip(*chunk.values())]
        else:
            rows = list(chunk)
        batch = collator(rows)
        yield start, {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def autocast_context(autocast: Optional[Callable[[], Any]]) -> Any:
    """``autocast()`` if a factory was given, else a context that does nothing."""
    return autocast() if autocast is not None else contextlib.nullcontext()


def output_logits(outputs: Any) -> Any:
    """Logits from a transformers output object or a plain tuple."""
    logits = getattr(outputs, "logits", None)
    return logits if logits is not None else outputs[0]


def _names_for(model: Any, num_labels: int, label_names: Optional[Sequence[str]]) -> list[str]:
    """Given names if any, else the model config's ``id2label``, else ``"0"``, ``"1"``, ..."""
    if label_names:
        if len(label_names) != num_labels:
            raise ModelError(f"the model scores {num_labels} classes but label_names has "
                             f"{len(label_names)}: {list(label_names)}")
        return [str(n) for n in label_names]
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
    return [str(id2label.get(i, i)) for i in range(num_labels)]


def evaluate_classification(
    model: Any,
    dataset: Any,
    collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
    batch_size: int = 64,
    label_names: Optional[Sequence[str]] = None,
    device: Any = None,
    autocast: Optional[Callable[[], Any]] = None,
    desc: str = "Evaluating",
    num_samples: int = 8,
    return_predictions: bool = False,
) -> dict[str, Any]:
    """Predict every row of a tokenized dataset and score the predictions.

    Works with plain and PEFT-wrapped sequence-classification models. The model is put in eval
    mode for the pass and restored afterwards.

    Args:
        model: A model whose output has ``logits`` of shape (batch, num_labels).
        dataset: Tokenized rows with ``input_ids`` and an int ``labels`` (or ``label``).
        collator: Turns a list of rows into padded tensors, e.g. ``ClassificationCollator``.
        batch_size: Rows per forward pass.
        label_names: Class names by id; defaults to the model config's ``id2label``.
        device: Where to run; defaults to the device of the model's parameters.
        autocast: Optional factory of a context manager (e.g. ``lambda: torch.autocast("cuda")``).
        desc: Progress bar label.
        num_samples: How many predictions (the first rows) to return as samples.
        return_predictions: Also return every row's names as
            ``predictions: {"label": ["pos", ...], "predicted": ["neg", ...]}``.

    Returns:
        `classification_metrics` plus ``samples``: ``[{"index": 0, "label": "pos",
        "predicted": "neg", "confidence": 0.71, "correct": False}, ...]``.
    """
    import torch
    from tqdm.auto import tqdm

    from tunesmith.config.logs import show_progress

    if len(dataset) == 0:
        raise DataError("evaluate_classification: the evaluation set is empty")
    device = device if device is not None else model_device(model)
    y_true: list[int] = []
    y_pred: list[int] = []
    confidence: list[float] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), tqdm(total=len(dataset), desc=desc, unit="ex", leave=False,
                                                  disable=not show_progress()) as bar:
            for _, batch in collated_batches(dataset, collator, batch_size, device):
                if "labels" not in batch:
                    raise DataError("evaluate_classification: rows need an int 'labels' (or 'label') column")
                labels = batch.pop("labels")  # not passed, so the model skips computing a loss
                with autocast_context(autocast):
                    logits = output_logits(model(**batch))
                # Softmax in fp32: bf16 probabilities are too coarse to report as confidence.
                probs = logits.float().softmax(dim=-1)
                top, pred = probs.max(dim=-1)
                y_true += labels.tolist()
                y_pred += pred.tolist()
                confidence += top.tolist()
                bar.update(len(labels))
    finally:
        model.train(was_training)

    names = _names_for(model, logits.shape[-1], label_names)
    metrics = classification_metrics(y_true, y_pred, names)
    metrics["samples"] = [
        {"index": i, "label": names[y_true[i]], "predicted": names[y_pred[i]],
         "confidence": confidence[i], "correct": y_true[i] == y_pred[i]}
        for i in range(min(num_samples, len(y_true)))
    ]
    if return_predictions:
        metrics["predictions"] = {"label": [names[y] for y in y_true], "predicted": [names[y] for y in y_pred]}
    return metrics
