"""The arithmetic of group relative policy optimisation (``train.trainer=grpo``), apart from the loop.

- `group_advantages`: each completion's reward against its group's (the completions of one prompt);
- `completion_mask`: which sampled tokens count (up to and including the first stop token);
- `completion_logps`: the log-probability of each completion token under the model, with the output
  head run only at completion positions (as `tunesmith.training.losses` does for SFT);
- `policy_loss`: the clipped-free GRPO objective (one update per sample, so the ratio is 1) plus the
  k3 KL estimate against a reference, summed over completion tokens and divided by a token count.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from tunesmith.training.losses import DEFAULT_CHUNK_ROWS, _unwrap, head_returns_hidden, label_only_unsupported
from tunesmith.training.sequence_logps import head_logps

STD_FLOOR = 1e-4  # added to a group's standard deviation: a group of equal rewards gives advantages 0, not 0/0


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """``(r - mean of its group) / (std of its group + 1e-4)``; without ``scale``: ``r - mean``.

    Rows ``i * group_size ... (i + 1) * group_size - 1`` are the completions of prompt ``i``; the
    standard deviation is the sample one (n - 1), as GRPO's reference code takes it.

    Example:
        >>> group_advantages(torch.tensor([1.0, 0.0, 2.0, 2.0]), 2, scale=False)
        tensor([ 0.5000, -0.5000,  0.0000,  0.0000])
    """
    groups = rewards.float().view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (groups.std(dim=1, keepdim=True) + STD_FLOOR)
    return centred.reshape(-1)


def completion_mask(completion_ids: torch.Tensor, stop_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Which sampled tokens count: each row up to and including its first stop token.

    Returns:
        (mask, stopped): the 0/1 mask like ``completion_ids``, and whether each row stopped (a row
        without a stop token ran into ``max_new_tokens``).

    Example:
        >>> completion_mask(torch.tensor([[5, 2, 0, 0], [5, 6, 7, 8]]), stop_ids=[2])
        (tensor([[1, 1, 0, 0], [1, 1, 1, 1]]), tensor([ True, False]))
    """
    is_stop = torch.isin(completion_ids, torch.tensor(stop_ids, device=completion_ids.device))
    stopped = is_stop.any(dim=1)
    # Stop tokens before (not at) each position: a position counts while none came before it.
    before = torch.cumsum(is_stop.long(), dim=1) - is_stop.long()
    return (before == 0).long(), stopped


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as generation numbers them: ``[[0, 1, 1]]`` -> ``[[0, 0, 1]]``."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def completion_logps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask: torch.Tensor,
                     temperature: float = 1.0, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                     head_only_at_completions: bool = True) -> torch.Tensor:
    """Log-probabilities of the completion tokens under ``model``; 0 elsewhere.

    Args:
        model: the causal LM (peft / DDP wrappers are fine).
        input_ids: (N, T) prompt (left-padded) then completion tokens.
        attention_mask: (N, T) 1 at real tokens.
        mask: (N, T) 1 at the completion tokens to score.
        temperature: the logits are divided by it, as the sampler divided them.
        chunk_rows: completion positions per head matmul; with gradients each chunk's logits are
            recomputed in the backward instead of stored.
        head_only_at_completions: run the output head only at the positions that predict a completion
            token (models where `label_only_unsupported` finds nothing against it); else full logits.

    Returns:
        (N, T - 1) fp32: entry ``[i, t]`` is log p(token t + 1 | tokens up to t) where token t + 1 is scored.
    """
    targets = input_ids[:, 1:]
    keep = mask[:, 1:].bool()
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask,
              "position_ids": position_ids_for(attention_mask), "use_cache": False}
    out = torch.zeros(targets.shape, dtype=torch.float32, device=input_ids.device)
    if head_only_at_completions and label_only_unsupported(model) is None:
        head = _unwrap(model).get_output_embeddings()
        with head_returns_hidden(head):
            hidden = model(**inputs).logits[:, :-1][keep]
        values = head_logps(hidden, head, targets[keep], chunk_rows, temperature)
    else:
        logits = model(**inputs).logits[:, :-1][keep].float() / temperature
        values = logits.gather(1, targets[keep][:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)
    return out.masked_scatter(keep, values)


def policy_loss(logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, divisor: Any,
                ref_logps: Optional[torch.Tensor] = None, kl_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum over scored tokens of (-A * ratio + kl_weight * k3) / divisor`` and the summed k3 (detached).

    The ratio ``exp(logp - logp.detach())`` is 1 (one update per sample) with the gradient of
    ``logp``; k3 is ``exp(ref - logp) - (ref - logp) - 1`` per token, 0 where the model equals the
    reference and positive elsewhere. With ``divisor`` the scored tokens of the whole accumulated
    batch, summed micro-batch gradients equal the gradient of one big batch.

    Args:
        logps: (N, L) log-probabilities of the scored tokens (`completion_logps`).
        advantages: (N,) one per completion.
        mask: (N, L) 1 where a token is scored.
        divisor: number of scored tokens the loss is divided by.
        ref_logps: (N, L) the reference's log-probabilities, needed when ``kl_weight > 0``.
        kl_weight: weight of the KL term.
    """
    mask = mask.to(logps.dtype)
    ratio = torch.exp(logps - logps.detach())
    per_token = -ratio * advantages[:, None].to(logps.dtype)
    kl_sum = logps.new_zeros(())
    if kl_weight > 0 and ref_logps is not None:
        diff = ref_logps - logps
        kl = torch.exp(diff) - diff - 1.0
        per_token = per_token + kl_weight * kl
        kl_sum = (kl * mask).sum().detach()
    divisor = torch.as_tensor(divisor, device=logps.device, dtype=logps.dtype).clamp_min(1)
    return (per_token * mask).sum() / divisor, kl_sum
