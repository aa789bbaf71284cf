"""Log-probabilities of whole answers: ``log p(y | x)`` summed over the trained tokens of each sequence.

Preference and RL losses score sequences, not tokens. ``sequence_logps`` runs the model once over
a batch whose sequences may sit in padded rows or side by side in one padding-free row (position
ids restarting at 0), and applies the output head only at the positions whose next token is
trained, a chunk of rows at a time (as ``train.logits=label_only`` does for SFT): a 49,152-column
vocabulary is never materialised for prompt tokens. Each chunk is recomputed in the backward pass
instead of keeping its logits (``torch.utils.checkpoint``), so memory stays at one chunk.
"""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.training.losses import (DEFAULT_CHUNK_ROWS, IGNORE_INDEX, _unwrap, head_returns_hidden,
                                       label_only_unsupported, shifted_targets)

# Batch keys that describe the examples to the loss, not to the model (all others go to the forward).
LOSS_KEYS = ("labels", "pairs", "desirable")
REFERENCE_PREFIX = "ref_"  # precomputed reference log-probabilities (``ref_logps``)


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """What the forward pass receives: the batch without its loss keys."""
    return {k: v for k, v in batch.items()
            if k not in LOSS_KEYS and not k.startswith(REFERENCE_PREFIX) and v is not None}


def sequence_index(batch: dict[str, Any]) -> torch.Tensor:
    """Which sequence each position belongs to, numbered in order (rows x positions).

    Padded rows: one sequence per row. A padding-free row (``position_ids`` restarting at 0 where a
    sequence starts) holds several: ``position_ids [[0, 1, 2, 0, 1]]`` -> ``[[0, 0, 0, 1, 1]]``.
    """
    ids = batch["input_ids"]
    positions = batch.get("position_ids")
    if positions is None or ids.shape[0] > 1:
        return torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(ids)
    starts = (positions == 0).long()
    return starts.flatten().cumsum(0).view_as(ids) - 1


def _token_logps(hidden: torch.Tensor, weight: torch.Tensor, bias: Any, targets: torch.Tensor,
                 temperature: float = 1.0) -> torch.Tensor:
    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    if temperature != 1.0:
        logits = logits / temperature
    return logits.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)


def head_logps(hidden: torch.Tensor, head: Any, targets: torch.Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS,
               temperature: float = 1.0) -> torch.Tensor:
    """``log_softmax(head(hidden) / temperature)[targets]`` per row, in fp32, a chunk of rows at a time
    (recomputed in the backward pass instead of keeping each chunk's logits)."""
    from torch.utils.checkpoint import checkpoint

    parts = []
    for start in range(0, hidden.shape[0], chunk_rows):
        h, t = hidden[start:start + chunk_rows], targets[start:start + chunk_rows]
        if torch.is_grad_enabled() and (h.requires_grad or head.weight.requires_grad):
            parts.append(checkpoint(_token_logps, h, head.weight, head.bias, t, temperature, use_reentrant=False))
        else:
            parts.append(_token_logps(h, head.weight, head.bias, t, temperature))
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


def sequence_logps(model: Any, batch: dict[str, Any], chunk_rows: int = DEFAULT_CHUNK_ROWS,
                   label_only: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of the trained tokens of each sequence, and their counts.

    Args:
        model: a causal LM (peft / DDP wrappers fine).
        batch: ``input_ids`` and unshifted ``labels`` (-100 where nothing is trained), optionally
            ``attention_mask`` and ``position_ids`` (padding-free rows).
        chunk_rows: trained positions per output-head matmul.
        label_only: run the head only at trained positions (when the model allows, see
            ``label_only_unsupported``); False: the model's full logits.

    Returns:
        ``(logps, counts)``, each of shape (sequences,), in the order the sequences appear.

    Example:
        labels ``[[-100, 7, 8], [-100, -100, 9]]`` -> logps ``[log p(7|.) + log p(8|.), log p(9|.)]``,
        counts ``[2, 1]``.
    """
    labels = batch["labels"]
    targets = shifted_targets(labels)
    seq = sequence_index(batch)
    keep = targets != IGNORE_INDEX
    n_seq = int(seq.max().item()) + 1 if seq.numel() else 0
    inputs = {"use_cache": False, **model_inputs(batch)}
    head = _unwrap(model).get_output_embeddings()
    if label_only and label_only_unsupported(model) is None:
        with head_returns_hidden(head):
            hidden = model(**inputs).logits
        token = head_logps(hidden[keep.to(hidden.device)], head, targets[keep].to(hidden.device), chunk_rows)
    else:
        logits = model(**inputs).logits.float()
        picked = logits[keep.to(logits.device)]
        token = picked.gather(1, targets[keep].to(logits.device)[:, None]).squeeze(1) - torch.logsumexp(picked, -1)
    index = seq[keep].to(token.device)
    logps = torch.zeros(n_seq, dtype=token.dtype, device=token.device).index_add(0, index, token)
    counts = torch.zeros(n_seq, dtype=torch.long, device=token.device).index_add(0, index, torch.ones_like(index))
    return logps, counts


def precision_context(args: Any) -> Any:
    """The training steps' mixed precision (``TrainingArguments`` bf16 / fp16) for passes outside them:
    the Trainer applies autocast only around the prepared model's own forward."""
    import contextlib

    if args.bf16 or args.fp16:
        return torch.autocast(args.device.type, dtype=torch.bfloat16 if args.bf16 else torch.float16)
    return contextlib.nullcontext()


def score_sequences(model: Any, dataset: Any, collator: Any, batch_size: int, autocast: Any, desc: str,
                    reward_model: bool = False) -> list[float]:
    """One number per sequence of ``collator``'s batches over ``dataset``, in order, without gradients:
    the summed answer log-probability (``sequence_logps``), or a one-output model's score.

    A pair collator yields each batch's chosen answers, then its rejected ones; the numbers come in
    that order, batch after batch.
    """
    from tqdm.auto import tqdm

    from tunesmith.config.logs import show_progress

    device = next(model.parameters()).device
    values: list[float] = []
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(range(0, len(dataset), batch_size), desc=desc, unit="batch", leave=False,
                          disable=not show_progress()):
            rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collator(rows).items()}
            with torch.no_grad(), autocast:
                if reward_model:
                    scores = model(**model_inputs(batch)).logits.squeeze(-1)
                else:
                    scores = sequence_logps(model, batch)[0]
            values += scores.float().cpu().tolist()
    finally:
        model.train(was_training)
    return values
