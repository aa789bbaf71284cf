"""Causal language models: mean loss per trained token and perplexity on a held-out set.

The loss is computed here from logits and labels rather than taken from the model's output,
because a model's ``loss`` is a mean over one batch: averaging those means weights a batch of
10 trained tokens the same as one of 10,000. Summing token losses and dividing once by the
token count gives every token the same weight, whatever the batching.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.errors import DataError
from tunesmith.evaluation.classification import (autocast_context, collated_batches, model_device,
                                                 output_logits)


def summed_token_loss(logits: Any, labels: Any) -> tuple[float, int]:
    """Summed next-token cross-entropy (nats) and the number of tokens it covers.

    Labels are unshifted (see `tunesmith.data.tokenize`): position t's logits predict label
    t + 1, and positions labelled -100 are skipped. For ``labels [[-100, 7, 8]]`` the logits at
    positions 0 and 1 are scored against 7 and 8, so the count is 2.
    """
    import torch.nn.functional as F

    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    # Select the trained positions before casting: fp32 logits for every pad position of a
    # large vocabulary would cost memory for nothing.
    scored = logits[:, :-1][keep].float()
    loss = F.cross_entropy(scored, targets[keep], reduction="sum")
    return float(loss), int(keep.sum())


def evaluate_perplexity(
    model: Any,
    dataset: Any,
    collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
    batch_size: int = 8,
    device: Any = None,
    autocast: Optional[Callable[[], Any]] = None,
    desc: str = "Perplexity",
) -> dict[str, Any]:
    """Token-weighted loss and perplexity of a causal LM over a tokenized dataset.

    Works with padded batches (``PaddingCollator``) and packed ones (``PackedCollator``, whose
    first token of each example is already -100, so no loss crosses an example boundary).

    Args:
        model: A causal LM (plain or PEFT-wrapped) whose output has ``logits``.
        dataset: Tokenized rows with ``input_ids`` and unshifted ``labels`` (-100 = not scored).
        collator: Turns a list of rows into padded tensors.
        batch_size: Rows per forward pass.
        device: Where to run; defaults to the device of the model's parameters.
        autocast: Optional factory of a context manager (e.g. ``lambda: torch.autocast("cuda")``).
        desc: Progress bar label.

    Returns:
        ``{"loss": 2.31, "perplexity": 10.07, "tokens": 51234}``: mean loss in nats per scored
        token, ``exp(loss)``, and the number of scored tokens.

    Raises:
        DataError: The dataset is empty or has no trained tokens.
    """
    import torch
    from tqdm.auto import tqdm

    from tunesmith.config.logs import show_progress

    device = device if device is not None else model_device(model)
    total_loss = 0.0  # Python float (fp64): sums over many batches keep their precision
    total_tokens = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), tqdm(total=len(dataset), desc=desc, unit="ex", leave=False,
                                                  disable=not show_progress()) as bar:
            for start, batch in collated_batches(dataset, collator, batch_size, device):
                if "labels" not in batch:
                    raise DataError("evaluate_perplexity: rows need a 'labels' column")
                labels = batch.pop("labels")  # not passed, so the model skips its own batch-mean loss
                with autocast_context(autocast):
                    logits = output_logits(model(**batch))
                loss, tokens = summed_token_loss(logits, labels)
                total_loss += loss
                total_tokens += tokens
                bar.update(min(batch_size, len(dataset) - start))
    finally:
        model.train(was_training)

    if total_tokens == 0:
        raise DataError("evaluate_perplexity: no trained tokens (every label is -100 or the set is empty)")
    mean = total_loss / total_tokens
    try:
        perplexity = math.exp(mean)
    except OverflowError:  # loss above ~709 nats: an untrained or diverged model
        perplexity = math.inf
    return {"loss": mean, "perplexity": perplexity, "tokens": total_tokens}


def evaluate_seq2seq_loss(model: Any, dataset: Any, collator: Any, batch_size: int = 8, device: Any = None,
                          autocast: Any = None) -> dict[str, Any]:
    """Mean loss per target token of an encoder-decoder: the model's own (mean) loss re-weighted by
    each batch's target-token count, so every token counts once whatever the batching."""
    import torch

    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for _, batch in collated_batches(dataset, collator, batch_size, device or model_device(model)):
                with autocast_context(autocast):
                    loss = model(**batch).loss
                n = int((batch["labels"] != -100).sum())
                total, tokens = total + float(loss) * n, tokens + n
    finally:
        model.train(was_training)
    mean = total / max(tokens, 1)
    return {"loss": mean, "perplexity": math.exp(min(mean, 700.0)), "tokens": tokens}
