"""The causal-LM training loss, computed only where a token is trained.

A causal LM's output head turns every position's hidden state into a row of vocabulary logits
(49,152 columns for SmolLM2), and the usual loss then takes a log-softmax over all of them. In
chat fine-tuning most positions are prompt or padding with label -100, so most of that work (and
a tokens × vocabulary tensor in fp32, plus its gradient) is thrown away. `LabelOnlyLoss` instead:

1. runs the model with its output head replaced by the identity, so the forward returns the last
   hidden states (and goes through every wrapper: peft, DDP, autocast);
2. shifts the labels (tunesmith's labels are unshifted, see `tunesmith.data.tokenize`) and keeps
   the hidden states of the positions whose next token is trained;
3. applies the head to those rows in chunks of ``chunk_rows``, taking the cross-entropy of each
   chunk and its gradient in the same pass (`linear_cross_entropy`), so at most one chunk of
   logits exists at a time, in the forward and in the backward alike.

The loss is the sum over trained tokens divided by ``num_items_in_batch`` (the trained tokens of
the whole accumulated batch, which ``transformers.Trainer`` counts) or else by the batch's own
count: the same value as the model's own loss. Architectures whose forward does more than
``lm_head(hidden)`` (logit soft-capping, logit scaling, router losses), heads wrapped by peft
(LoRA on the head, ``modules_to_save``) and evaluation calls keep the model's own loss.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch

from tunesmith.training.guarded_trainer import TunesmithTrainer

IGNORE_INDEX = -100  # the label of positions that are not trained (tunesmith.data.tokenize)
DEFAULT_CHUNK_ROWS = 1024  # rows of hidden states per head matmul: 1024 x 49,152 fp32 logits = 192 MiB

# Model types whose causal-LM forward is exactly ``logits = self.lm_head(hidden_states)`` followed by
# the standard shifted cross-entropy (checked against transformers 5.x). Others keep their own loss.
LABEL_ONLY_MODEL_TYPES = frozenset({
    "llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "olmo", "olmo2", "smollm3", "starcoder2",
})
# Config attributes that change the logits after the head; any of them set means: use the model's loss.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_router_logits")


def _unwrap(model: Any) -> Any:
    """The transformers model inside DDP / peft wrappers."""
    while hasattr(model, "module") and not hasattr(model, "get_output_embeddings"):
        model = model.module  # DistributedDataParallel and similar
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()  # peft
    return model


def label_only_unsupported(model: Any) -> Optional[str]:
    """Why ``model`` must keep its own loss, or None when `LabelOnlyLoss` can compute it.

    Example:
        ``label_only_unsupported(peft_llama)`` -> ``None``;
        ``label_only_unsupported(gemma2_model)`` -> ``"model type 'gemma2' transforms its logits ..."``.
    """
    inner = _unwrap(model)
    config = getattr(inner, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in LABEL_ONLY_MODEL_TYPES:
        return (f"model type {model_type!r} is not one whose forward is known to be lm_head(hidden) "
                f"(known: {', '.join(sorted(LABEL_ONLY_MODEL_TYPES))})")
    for name in _LOGIT_TRANSFORMS:
        if getattr(config, name, None) not in (None, False, 1, 1.0):
            return f"model type {model_type!r} transforms its logits ({name}={getattr(config, name)!r})"
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if type(head) is not torch.nn.Linear:
        return (f"the output head is a {type(head).__name__}, not a plain Linear layer "
                "(LoRA or modules_to_save on lm_head)")
    if "forward" in vars(head) or head._forward_hooks or head._forward_pre_hooks:
        return "the output head has hooks or a replaced forward (device maps, offloading)"
    if head.weight.requires_grad and inner is not model and not hasattr(model, "get_base_model"):
        return "a trained output head inside a distributed wrapper"  # DDP would see it unused
    return None


@contextlib.contextmanager
def head_returns_hidden(head: Any) -> Iterator[None]:
    """Within the block, ``head(x)`` returns ``x``: the model's "logits" are its last hidden states."""
    head.forward = _identity  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        del head.forward


def _identity(hidden: Any) -> Any:
    return hidden


def shifted_targets(labels: Any) -> Any:
    """Position t predicts token t + 1: ``[[-100, 5, 6]]`` -> ``[[5, 6, -100]]``."""
    pad = torch.full_like(labels[..., :1], IGNORE_INDEX)
    return torch.cat([labels[..., 1:], pad], dim=-1)


def linear_cross_entropy(hidden: Any, weight: Any, targets: Any, divisor: Any, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                         bias: Any = None) -> Any:
    """``sum(cross_entropy(hidden @ weight.T + bias, targets)) / divisor``, one chunk of rows at a time.

    Under autocast the matmuls run in the autocast dtype and the softmax in fp32, as the model's
    own head and loss do. Gradients for ``hidden`` (and ``weight`` / ``bias`` when they require
    them) are computed chunk by chunk during the forward and kept, so no logits are stored.

    Args:
        hidden: (n, d) hidden states of the trained positions.
        weight: (V, d) output head weight.
        targets: (n,) token ids, none of them -100.
        divisor: number (or 0-d tensor) the summed loss is divided by.
        chunk_rows: rows per chunk; memory is about ``chunk_rows * V * 6`` bytes.
        bias: optional (V,) head bias.

    Example:
        ``linear_cross_entropy(torch.randn(3, 4), torch.randn(10, 4), torch.tensor([1, 2, 3]), 3)``
        equals ``F.cross_entropy(h @ w.T, t)`` up to rounding.
    """
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    else:
        dtype = torch.promote_types(hidden.dtype, weight.dtype)
    divisor = torch.as_tensor(divisor, device=hidden.device)
    return _LinearCrossEntropy.apply(hidden, weight, bias, targets, divisor, int(chunk_rows), dtype)


class _LinearCrossEntropy(torch.autograd.Function):
    """Loss and gradients in one chunked pass; the backward only scales the stored gradients."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, divisor, chunk_rows, dtype):
        with torch.autocast(hidden.device.type, enabled=False):
            scale = divisor.to(torch.float32).reciprocal()
            w = weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            wants = ctx.needs_input_grad
            grad_hidden = torch.empty_like(hidden) if wants[0] else None
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if wants[1] else None
            grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if wants[2] else None
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for start in range(0, hidden.shape[0], chunk_rows):
                h = hidden[start:start + chunk_rows].to(dtype)
                t = targets[start:start + chunk_rows]
                logits = torch.nn.functional.linear(h, w, b).float()  # rounded like the model's logits
                lse = torch.logsumexp(logits, dim=-1)
                total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
                if not any(wants[:3]):
                    continue
                # d(loss)/d(logits) = (softmax - one_hot) * scale, built in place in the logits buffer.
                probs = logits.sub_(lse[:, None]).exp_()
                probs[torch.arange(t.shape[0], device=t.device), t] -= 1.0
                probs *= scale
                if grad_bias is not None:
                    grad_bias += probs.sum(0)
                g = probs.to(dtype)
                del logits, probs
                if grad_hidden is not None:
                    grad_hidden[start:start + chunk_rows] = g @ w
                if grad_weight is not None:
                    grad_weight += (g.t() @ h).float()
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return total * scale

    @staticmethod
    def backward(ctx, grad_output):
        grads = []
        for grad, dtype in zip(ctx.saved_tensors, ctx.dtypes):
            grads.append(None if grad is None else (grad * grad_output).to(dtype))
        return (*grads, None, None, None, None)


class LabelOnlyLoss:
    """A ``Trainer.compute_loss_func`` for causal LMs that runs the head only at trained positions.

    Call the model inside `hidden_states_forward` (the trainer's ``compute_loss`` does it for
    training steps); the loss then receives hidden states as ``outputs.logits``. Outside that block
    (evaluation, prediction) it receives real logits and computes the model's standard loss, so it
    is a valid ``compute_loss_func`` either way.

    Args:
        model: the model being trained (peft / DDP wrappers are fine).
        chunk_rows: rows of hidden states per head matmul.
    """

    def __init__(self, model: Any, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        if chunk_rows <= 0:
            raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
        self.model = model
        self.chunk_rows = chunk_rows
        self.enabled = True  # False: always the model's full logits (train.logits=full)
        self.unsupported = label_only_unsupported(model)
        self._hidden = False
        self._positions: Any = None

    @contextlib.contextmanager
    def hidden_states_forward(self, enabled: bool = True, positions: Any = None) -> Iterator[bool]:
        """Within the block the model returns hidden states; yields whether that is in effect.
        ``positions``: the batch's trained positions counted on the host
        (``host_counts.TRAINED_POSITIONS``), so the loss selects its rows without a read from the GPU."""
        if not (enabled and self.enabled) or self.unsupported is not None:
            yield False
            return
        head = _unwrap(self.model).get_output_embeddings()
        with head_returns_hidden(head):
            self._hidden, self._positions = True, positions
            try:
                yield True
            finally:
                self._hidden, self._positions = False, None

    def __call__(self, outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        """The mean cross-entropy per trained token (see the module docstring)."""
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        targets = shifted_targets(labels).to(logits.device)
        if not self._hidden:  # real logits: the model's own loss
            from transformers.loss.loss_utils import fixed_cross_entropy

            return fixed_cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                       num_items_in_batch)
        positions = self._positions
        if positions is not None:  # listed on the host: the rows' number is known without asking the GPU
            positions = positions.to(logits.device, non_blocking=True)
            hidden = logits.reshape(-1, logits.shape[-1]).index_select(0, positions)
            targets, count = targets.reshape(-1).index_select(0, positions), positions.numel()
        else:  # a boolean selection: on a GPU its size is read back
            keep = targets != IGNORE_INDEX
            hidden, targets, count = logits[keep], targets[keep], keep.sum()
        divisor = num_items_in_batch if num_items_in_batch is not None else count
        # At least 1: a batch without trained tokens gives 0 (and zero gradients), not 0 / 0.
        divisor = torch.as_tensor(divisor, device=logits.device).clamp_min(1)
        head = _unwrap(self.model).get_output_embeddings()
        return linear_cross_entropy(hidden, head.weight, targets, divisor, self.chunk_rows, head.bias)


class LabelOnlyLossTrainer(TunesmithTrainer):
    """``transformers.Trainer`` whose training steps run the model with hidden-state outputs when
    its ``compute_loss_func`` is a `LabelOnlyLoss` (evaluation keeps real logits). Its training
    batches bring counts from the host (``host_counts.HostCounts``), so a step reads nothing back
    from the GPU for them."""

    def get_train_dataloader(self) -> Any:
        from torch.utils.data import IterableDataset

        from tunesmith.training.host_counts import HostCounts

        collator = self.data_collator
        # Batches that accelerate would cut along the batch dimension (an iterable dataset read by
        # one process for several) cannot carry flat positions.
        if self.args.world_size > 1 and isinstance(self.train_dataset, IterableDataset):
            return super().get_train_dataloader()
        self.data_collator = HostCounts(collator, getattr(self.processing_class, "pad_token_id", None))
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = collator

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None):
        from tunesmith.training.host_counts import TOKENS, TRAINED_POSITIONS

        positions = inputs.pop(TRAINED_POSITIONS, None)
        inputs.pop(TOKENS, None)
        loss_func = self.compute_loss_func
        if not isinstance(loss_func, LabelOnlyLoss) or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        with loss_func.hidden_states_forward(enabled=not return_outputs, positions=positions):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
