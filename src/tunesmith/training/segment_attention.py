"""Attention for padding-free rows, computed one example at a time.

A padding-free batch (``data.packing=padding_free`` or ``pack``) puts several examples in one row
and marks each with ``position_ids`` that restart at 0. transformers keeps them apart with a
block-diagonal mask over the whole row, so SDPA still computes every query against every key of
the row (``L**2`` for a row of ``L`` tokens) and can no longer use its causal fast path. This
attention instead runs SDPA with ``is_causal=True`` on each example's own slice of the row, which
costs ``sum(n_i**2)`` and gives the same result: a token sees exactly the earlier tokens of its
own example either way (tests/training/test_segment_attention.py checks outputs and gradients
against the masked SDPA).

It is registered with transformers' attention interface as ``tunesmith_segments`` and used only
for training forwards of rows whose positions restart. Everything else (padded batches,
evaluation, generation with a cache, sliding-window or soft-capped attention) goes to the
standard SDPA function with the standard mask, so a model can keep this implementation set.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F

from tunesmith.config.schema import PADDING_FREE_MODEL_TYPES
from tunesmith.training.losses import _unwrap

NAME = "tunesmith_segments"


def segment_bounds(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """``(start, end)`` of every example in every row: a new one starts wherever the position is
    not the previous one plus 1 (the rule transformers uses to find packed sequences).

    Example:
        ``segment_bounds(torch.tensor([[0, 1, 2, 0, 1]]))`` -> ``[[(0, 3), (3, 5)]]``.
    """
    rows = position_ids.tolist()
    out = []
    for row in rows:
        starts = [0] + [i for i in range(1, len(row)) if row[i] != row[i - 1] + 1]
        out.append(list(zip(starts, starts[1:] + [len(row)])))
    return out


_last_bounds: list = [None, None]  # (position_ids tensor, its bounds): every layer of a forward gets the same tensor


def _bounds_of(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """`segment_bounds`, computed once per forward rather than once per layer."""
    if _last_bounds[0] is not position_ids:
        _last_bounds[:] = [position_ids, segment_bounds(position_ids)]
    return _last_bounds[1]


def _fallback_reason(module: Any, query: torch.Tensor, key: torch.Tensor, kwargs: dict[str, Any]) -> Optional[str]:
    if not module.training:
        return "not training"
    position_ids = kwargs.get("position_ids")
    if position_ids is None or position_ids.shape[-1] != query.shape[2] or key.shape[2] != query.shape[2]:
        return "no position_ids for these queries, or a cache"
    if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
        return "soft-capped attention or attention sinks"
    if getattr(module, "is_causal", True) is False:
        return "not causal"
    return None


@torch.compiler.disable  # reads the example boundaries on the host: runs eagerly inside a compiled layer
def segment_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: Optional[torch.Tensor], dropout: float = 0.0,
                      scaling: Optional[float] = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """An attention function with transformers' signature: ``query`` is (batch, heads, L, dim),
    ``key`` / ``value`` (batch, kv_heads, L, dim); returns (batch, L, heads, dim) and no weights."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if _fallback_reason(module, query, key, kwargs) is None:
        position_ids = kwargs["position_ids"]
        bounds = _bounds_of(position_ids)
        if len(bounds) != query.shape[0]:  # one row of positions shared by the whole batch
            bounds = bounds * query.shape[0]
        window = getattr(module, "sliding_window", None)
        longest = max(end - start for row in bounds for start, end in row)
        if any(len(row) > 1 for row in bounds) and not (window and longest > window):
            return _per_segment(query, key, value, bounds, dropout, scaling), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  **kwargs)


def _per_segment(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 bounds: list[list[tuple[int, int]]], dropout: float, scaling: Optional[float]) -> torch.Tensor:
    gqa = query.shape[1] != key.shape[1]
    rows = []
    for r, row in enumerate(bounds):
        parts = [F.scaled_dot_product_attention(query[r:r + 1, :, a:b], key[r:r + 1, :, a:b], value[r:r + 1, :, a:b],
                                                dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa)
                 for a, b in row]
        rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
    out = torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]
    return out.transpose(1, 2).contiguous()


def register() -> None:
    """Make ``tunesmith_segments`` a name transformers accepts (its masks are SDPA's)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, segment_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def segment_attention_unsupported(model: Any) -> Optional[str]:
    """Why ``model`` cannot train with per-example attention, or None when it can."""
    inner = _unwrap(model)
    config = getattr(inner, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in PADDING_FREE_MODEL_TYPES:
        return f"model type {model_type!r} is not one known to work with it (known: {', '.join(sorted(PADDING_FREE_MODEL_TYPES))})"
    if getattr(config, "_attn_implementation", None) not in ("sdpa", NAME):
        return f"the model uses {getattr(config, '_attn_implementation', None)!r} attention, not sdpa"
    return None


@contextlib.contextmanager
def per_example_attention(model: Any, enabled: bool) -> Iterator[bool]:
    """While training, let a model that uses SDPA attend within each example of a padding-free row;
    the model's own implementation is restored afterwards. Yields whether it is in effect."""
    if not enabled or segment_attention_unsupported(model) is not None:
        yield False
        return
    register()
    with attention_implementation(model, NAME):
        yield True


@contextlib.contextmanager
def attention_implementation(model: Any, name: str) -> Iterator[None]:
    """Within the block the model (inside any peft / DDP wrapper) uses the registered attention
    implementation ``name``; its own is restored afterwards."""
    inner = _unwrap(model)
    before = inner.config._attn_implementation
    inner.set_attn_implementation(name)
    try:
        yield
    finally:
        inner.set_attn_implementation(before)
