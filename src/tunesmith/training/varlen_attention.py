"""Attention for padding-free rows on CUDA: one variable-length flash-attention call per layer.

A padding-free batch puts several examples in one row (``position_ids`` restart at 0 for each).
On a GPU, a Python loop of one SDPA call per example (`tunesmith.training.segment_attention`,
the right choice on a CPU) turns every layer into hundreds of tiny kernel launches. Here the
whole batch is one call of PyTorch's own variable-length kernel
(``torch.nn.attention.varlen.varlen_attn``): the rows are flattened to ``(tokens, heads, dim)``
and the kernel attends causally within each example, given the cumulative example lengths
``cu_seqlens`` (``[0, n_1, n_1 + n_2, ...]``) and the longest example.

Those lengths come with the batch: the padding-free collator writes ``cu_seq_lens_q`` /
``cu_seq_lens_k`` (int32) and ``max_length_q`` / ``max_length_k`` (int) next to ``input_ids``,
computed from the example lengths it already knows, and transformers hands these keywords to
every attention call. So nothing is read back from the GPU during a forward: no host sync, and no
``(L, L)`` mask is built (the attention is registered without a mask function). A forward that
arrives without them (an unusual caller) gets the lengths from ``position_ids`` on the device,
with one host read for the longest example.

It needs a CUDA device and half-precision queries (bf16 or fp16), which is what ``train.attention``
``auto`` checks before choosing it (`tunesmith.training.attention_choice`).
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Iterator, Optional

import torch

from tunesmith.training.losses import _unwrap

NAME = "tunesmith_varlen"
_BOUNDARY_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def varlen_available() -> Optional[str]:
    """None when ``torch.nn.attention.varlen.varlen_attn`` can be used here, else why not."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen (torch >= 2.10 has it)"
    return None


def cumulative_lengths(position_ids: torch.Tensor) -> torch.Tensor:
    """Cumulative example lengths of flattened rows, as int32 on the tensor's device.

    A new example starts at every row's first token and wherever the position is not the previous
    one plus 1 (the rule transformers uses for packed rows). The trailing pad segment of a row
    (positions restarting at 0) counts as an example of its own, so pads attend only to pads.

    Example:
        ``cumulative_lengths(torch.tensor([[0, 1, 2, 0, 1, 0]]))`` -> ``tensor([0, 3, 5, 6])``.
    """
    rows, length = position_ids.shape
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    index = torch.nonzero(starts.reshape(-1), as_tuple=False).reshape(-1)
    end = torch.tensor([rows * length], device=position_ids.device, dtype=index.dtype)
    return torch.cat([index, end]).to(torch.int32)


_KERNEL: list[tuple[Any, bool, bool]] = []  # (varlen_attn, takes enable_gqa, takes is_causal), read once


def _kernel() -> tuple[Any, bool, bool]:
    """The kernel and which of its keywords this torch has (read once, when the attention is
    registered: every layer of every forward asks, and a compiled layer reads it as a constant)."""
    if not _KERNEL:
        from torch.nn.attention.varlen import varlen_attn

        params = inspect.signature(varlen_attn).parameters
        _KERNEL.append((varlen_attn, "enable_gqa" in params, "is_causal" in params))
    return _KERNEL[0]


def varlen_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: Optional[torch.Tensor], dropout: float = 0.0,
                     scaling: Optional[float] = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """An attention function with transformers' signature: ``query`` is (batch, heads, L, dim),
    ``key`` / ``value`` (batch, kv_heads, L, dim); returns (batch, L, heads, dim) and no weights."""
    batch, heads, length, dim = query.shape
    if attention_mask is not None or key.shape[2] != length:
        # A padded batch or a cache: only reachable when the model keeps this implementation
        # outside training, which tunesmith never does; keep the stock path for it.
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        position_ids = kwargs.get("position_ids")
        if position_ids is None:
            position_ids = torch.arange(length, device=query.device)[None]
        cu = cumulative_lengths(position_ids.expand(batch, -1))
        longest = int((cu[1:] - cu[:-1]).max())  # one host read, only on this unusual path
    else:
        cu = cu.to(device=query.device, dtype=torch.int32, non_blocking=True)
        longest = int(kwargs["max_length_q"])
    kernel, takes_gqa, takes_causal = _kernel()
    out_dtype = query.dtype
    if query.is_cuda and query.dtype not in (torch.float16, torch.bfloat16):
        # fp32 weights under autocast: the rotary embedding promotes q and k back to fp32, and the
        # flash kernel takes half precision only; compute in the autocast dtype.
        half = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else torch.bfloat16
        query, key, value = query.to(half), key.to(half), value.to(half)
    q = query.transpose(1, 2).reshape(batch * length, heads, dim)
    k = key.transpose(1, 2).reshape(batch * length, key.shape[1], dim)
    v = value.transpose(1, 2).reshape(batch * length, value.shape[1], dim)
    extra: dict[str, Any] = {"scale": scaling}
    if k.shape[1] != heads:  # grouped-query attention
        if takes_gqa:
            extra["enable_gqa"] = True
        else:
            k = k.repeat_interleave(heads // k.shape[1], dim=1)
            v = v.repeat_interleave(heads // v.shape[1], dim=1)
    if takes_causal:
        extra["is_causal"] = True
    else:
        extra["window_size"] = (-1, 0)  # causal: no key after the query
    out = kernel(q, k, v, cu, cu, longest, longest, **extra)
    return out.reshape(batch, length, heads, dim).to(out_dtype), None


def register() -> None:
    """Make ``tunesmith_varlen`` a name transformers accepts. It has no mask function on purpose:
    transformers then builds no mask (and reads nothing back from the GPU) before each forward."""
    from transformers import AttentionInterface

    _kernel()
    AttentionInterface.register(NAME, varlen_attention)


def varlen_unsupported(model: Any, precision: str, max_length: int) -> Optional[str]:
    """Why ``model`` cannot train with this attention on examples of up to ``max_length`` tokens,
    or None when it can."""
    from tunesmith.training.segment_attention import segment_attention_unsupported

    reason = varlen_available()
    if reason:
        return reason
    if precision not in ("bf16", "fp16"):
        return f"the flash kernel needs bf16 or fp16, and train.precision resolves to {precision}"
    inner = _unwrap(model)
    config = getattr(inner, "config", None)
    window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
    if window and max_length > window:
        return f"examples of up to {max_length} tokens exceed the model's sliding window of {window}"
    head_dim = getattr(config, "head_dim", None) or (config.hidden_size // config.num_attention_heads)
    if head_dim > 256:
        return f"head dimension {head_dim} is above the flash kernel's 256"
    return segment_attention_unsupported(model)


@contextlib.contextmanager
def varlen_training_attention(model: Any) -> Iterator[None]:
    """While training, the model attends with `varlen_attention`; its own implementation is
    restored afterwards."""
    from tunesmith.training.segment_attention import attention_implementation

    register()
    with attention_implementation(model, NAME):
        yield
