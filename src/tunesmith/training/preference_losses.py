"""Preference losses on per-answer log-probabilities (pure tensor functions, one value per pair).

``c`` / ``r`` are the summed log-probabilities of the chosen / rejected answers under the trained
model, ``c_ref`` / ``r_ref`` under the reference, ``n_c`` / ``n_r`` their trained-token counts.

| loss | per pair |
|---|---|
| ``sigmoid`` (DPO) | ``-log sigmoid(beta * ((c - c_ref) - (r - r_ref)))`` |
| ``ipo`` | ``(((c - c_ref)/n_c - (r - r_ref)/n_r) - 1/(2 beta))^2`` |
| ``simpo`` (no reference) | ``-log sigmoid(beta * (c/n_c - r/n_r) - gamma)`` |
| ``orpo`` (no reference) | ``-c/n_c - w * log sigmoid(log odds(c/n_c) - log odds(r/n_r))``, ``odds(p) = p / (1 - p)`` |
| ``kto`` (one answer, desirable or not) | ``w_d * (1 - sigmoid(beta * (x - x_ref - z)))`` or ``w_u * (1 - sigmoid(beta * (z - (x - x_ref))))`` |

KTO's ``z`` (the reference point) is the batch's mean ``x - x_ref`` clamped at 0 and detached: an
estimate of the KL between the model and the reference from the batch itself, which needs no
second forward over mismatched prompt / answer pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F


@dataclass
class PairScores:
    """Log-probabilities of a batch of pairs (tensors of shape (pairs,))."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor
    ref_chosen: Optional[torch.Tensor] = None
    ref_rejected: Optional[torch.Tensor] = None

    def per_token(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean log-probability per trained token of the chosen and the rejected answers."""
        return self.chosen / self.chosen_tokens.clamp(min=1), self.rejected / self.rejected_tokens.clamp(min=1)

    def log_ratios(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``c - c_ref`` and ``r - r_ref`` (the implicit rewards over beta)."""
        if self.ref_chosen is None or self.ref_rejected is None:
            raise ValueError("this loss compares with a reference, but no reference log-probabilities were given")
        return self.chosen - self.ref_chosen, self.rejected - self.ref_rejected


def dpo_loss(s: PairScores, beta: float, kind: str = "sigmoid", simpo_gamma: float = 0.5) -> torch.Tensor:
    """Per-pair loss of ``kind`` (``sigmoid``, ``ipo``, ``simpo``); see the module docstring.

    Example:
        with equal log-ratios ``dpo_loss(...)`` is ``log 2`` per pair for ``sigmoid``.
    """
    if kind == "simpo":
        c, r = s.per_token()
        return -F.logsigmoid(beta * (c - r) - simpo_gamma)
    dc, dr = s.log_ratios()
    if kind == "ipo":
        h = dc / s.chosen_tokens.clamp(min=1) - dr / s.rejected_tokens.clamp(min=1)
        return (h - 1.0 / (2.0 * beta)) ** 2
    if kind == "sigmoid":
        return -F.logsigmoid(beta * (dc - dr))
    raise ValueError(f"unknown preference loss {kind!r}")


def implicit_rewards(s: PairScores, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``beta * (c - c_ref)`` and ``beta * (r - r_ref)``; without a reference, ``beta`` x the mean
    log-probability per token (SimPO's and ORPO's reward)."""
    if s.ref_chosen is None:
        c, r = s.per_token()
        return beta * c.detach(), beta * r.detach()
    dc, dr = s.log_ratios()
    return beta * dc.detach(), beta * dr.detach()


def orpo_loss(s: PairScores, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair ORPO loss and its odds-ratio term: the chosen answer's NLL per token plus ``weight``
    x ``-log sigmoid(log odds ratio)``."""
    c, r = s.per_token()
    # log odds(p) = log p - log(1 - p), with p = exp(mean log-probability per token) < 1.
    log_odds = (c - r) - (torch.log1p(-torch.exp(c).clamp(max=1 - 1e-6))
                          - torch.log1p(-torch.exp(r).clamp(max=1 - 1e-6)))
    ratio_term = -F.logsigmoid(log_odds)
    return -c + weight * ratio_term, ratio_term


def kto_loss(logps: torch.Tensor, ref_logps: torch.Tensor, desirable: torch.Tensor, beta: float,
             desirable_weight: float, undesirable_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example KTO loss and the reference point ``z`` used; see the module docstring."""
    ratio = logps - ref_logps
    z = ratio.detach().mean().clamp(min=0)
    desirable = desirable.to(torch.bool)
    good = desirable_weight * (1 - torch.sigmoid(beta * (ratio - z)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (z - ratio)))
    return torch.where(desirable, good, bad), z


def reward_model_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Per-pair Bradley-Terry loss of a reward model's scores: ``-log sigmoid(s_c - s_r)``."""
    return -F.logsigmoid(chosen.float() - rejected.float())
