"""Counts a training step needs, taken from each batch on the host before the batch moves to the GPU.

On a GPU, reading a value back from the device (``.item()``, ``bool(tensor)``, the size of a boolean
selection) stops the host until every kernel queued before it has run: the host cannot queue the
next kernels while the GPU works, and the GPU waits while the host prepares the next ones. A
causal-LM step used to read back four values per micro-batch that the batch on the host already
holds, or that need not be read at all:

- the input tokens it holds (transformers counts them on the device for ``num_input_tokens_seen``,
  which the progress bar's tokens/s reads): ``HostCounts`` counts them on the host, by the same
  rule, into ``TOKENS``;
- where a token is trained (the label-only loss selected those rows with a boolean mask, whose size
  only the device knew): ``HostCounts`` lists those positions into ``TRAINED_POSITIONS``, and the
  loss selects rows by index (``tunesmith.training.losses``);
- whether the loss is finite, for the log (transformers' ``logging_nan_inf_filter``): the trainer
  replaces a NaN / inf loss on the device (``guarded_trainer.finite_for_log``), with the same value
  transformers would log;
- the NaN guard's look at each loss: it keeps the losses on the device and reads them together
  with the gradients, once per optimizer step (``tunesmith.training.nan_guard``).

What is left is one read per optimizer step (the NaN guard, which must decide before the update)
and the reads transformers makes when it logs. ``bench/host_reads.py`` counts them.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from tunesmith.training.losses import IGNORE_INDEX, shifted_targets

TOKENS = "tunesmith_tokens"  # non-padding input tokens of the batch (a Python int)
TRAINED_POSITIONS = "tunesmith_trained_positions"  # flat indices of positions whose next token is trained


class HostCounts:
    """A collator that adds ``TOKENS`` and ``TRAINED_POSITIONS`` to the batches of ``collator``.

    ``TOKENS`` follows transformers' ``include_num_input_tokens_seen="non_padding"``: the attention
    mask's sum when the batch has one, else the input ids that are not ``pad_token_id``.
    ``TRAINED_POSITIONS`` indexes the batch flattened to (rows x length): position t is listed when
    label t + 1 of its row is trained (tunesmith's labels are unshifted). Batches without
    ``input_ids`` (or without ``labels``) go through without the key they cannot give.

    Example:
        labels ``[[-100, 5, 6], [-100, -100, 7]]`` -> ``TRAINED_POSITIONS`` = ``tensor([0, 1, 4])``.
    """

    def __init__(self, collator: Callable[[list[Any]], dict[str, Any]], pad_token_id: Optional[int] = None) -> None:
        self.collator = collator
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[Any]) -> dict[str, Any]:
        batch = self.collator(rows)
        ids = batch.get("input_ids")
        if isinstance(ids, torch.Tensor) and ids.device.type == "cpu":
            batch[TOKENS] = input_tokens(batch, self.pad_token_id)
        labels = batch.get("labels")
        if isinstance(labels, torch.Tensor) and labels.device.type == "cpu" and labels.dim() == 2:
            batch[TRAINED_POSITIONS] = trained_positions(labels)
        return batch


def input_tokens(batch: dict[str, Any], pad_token_id: Optional[int]) -> int:
    """The batch's non-padding input tokens, counted as transformers counts them."""
    mask = batch.get("attention_mask")
    if isinstance(mask, torch.Tensor):
        return int(mask.sum())
    ids = batch["input_ids"]
    if pad_token_id is not None:
        return int((ids != pad_token_id).sum())
    return ids.numel()


def trained_positions(labels: torch.Tensor) -> torch.Tensor:
    """Flat indices (over rows x length) of the positions whose next label is trained: the rows the
    label-only loss would select with ``shifted_targets(labels) != IGNORE_INDEX``."""
    return torch.nonzero(shifted_targets(labels).reshape(-1) != IGNORE_INDEX).reshape(-1)
