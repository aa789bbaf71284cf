"""Measuring a training run from the outside, the same way for the baseline and for tunesmith.

`instrument(trainer)` counts, for every training step, the token slots of the batch, the real
(non-pad) tokens, the trained tokens (label-bearing targets after the shift) and the useful model
FLOPs, and stamps the end of every step; `peak_memory` reads the peak resident memory (or CUDA
memory) of the training alone. `eval_loss` scores a trained model on held-out conversations with
one plain function, and `matmul_peak` times large matrix multiplies. `HostReadRequest` counts the
reads from the device a few steps make (on a GPU each one waits for the work queued before it).

On a GPU the measuring itself reads nothing back during training: a batch's counts are copied to
the host without waiting and added up after training, and step ends are CUDA events, whose times
are read after training too. Otherwise the benchmark would add the same stalls to both sides.

Useful FLOPs count the work the training maths needs, whatever the implementation does:
non-pad tokens only; for every token the frozen linear layers forward (2 x params) and their input
gradient (2 x params), the LoRA matrices forward and both gradients (6 x params); causal attention
inside each example (QK and AV: 2 x L^2 x width per layer forward, twice that backward); the
output head only at trained positions (forward and input gradient: 4 x width x vocabulary).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

IGNORE_INDEX = -100


@dataclass
class StepRecord:
    slots: int  # token positions in the batch, padding included
    real: int  # non-pad tokens
    trained: int  # positions whose next token is trained
    flops: float  # useful model FLOPs (see the module docstring)
    end: float = 0.0  # perf_counter at the end of the step (CUDA: seconds after train start, by event)


@dataclass
class ModelShape:
    """What the FLOP count needs: parameter counts and widths."""

    linear_params: int  # frozen linear weights in the blocks (the output head excluded)
    lora_params: int
    head_params: int  # output head (vocabulary x width)
    layers: int
    attn_width: int  # heads x head dim of the queries
    trainable_head: bool = False

    @classmethod
    def of(cls, model: Any) -> "ModelShape":
        import torch

        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        head = inner.get_output_embeddings()
        linear = lora = 0
        for name, module in inner.named_modules():
            if isinstance(module, torch.nn.Linear) and module is not head:
                if "lora_" in name:
                    lora += module.weight.numel()
                else:
                    linear += module.weight.numel()
        cfg = inner.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return cls(linear, lora, head.weight.numel(), cfg.num_hidden_layers, cfg.num_attention_heads * head_dim,
                   bool(head.weight.requires_grad))

    def step_flops(self, example_lengths: list[int], trained: int) -> float:
        tokens = sum(example_lengths)
        dense = tokens * (4 * self.linear_params + 6 * self.lora_params)
        attention = 3 * sum(2 * n * n * self.attn_width for n in example_lengths) * self.layers
        head = trained * (6 if self.trainable_head else 4) * self.head_params
        return float(dense + attention + head)


def example_lengths(inputs: dict[str, Any]) -> list[int]:
    """Lengths of the real examples in a collated batch: from ``attention_mask`` rows, or from the
    restarts of ``position_ids`` in packed rows (a trailing segment with no trained label is the
    collator's padding)."""
    labels = inputs["labels"]
    if "attention_mask" in inputs and inputs["attention_mask"] is not None:
        return [int(n) for n in inputs["attention_mask"].sum(dim=1).tolist()]
    lengths: list[int] = []
    for pos, lab in zip(inputs["position_ids"].tolist(), labels.tolist()):
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        segments = [(a, b) for a, b in zip(starts, starts[1:])]
        if segments and all(v == IGNORE_INDEX for v in lab[segments[-1][0]:]):
            segments = segments[:-1]
        lengths += [b - a for a, b in segments]
    return lengths


@dataclass
class Probe:
    shape: ModelShape
    cuda: bool
    steps: list[StepRecord] = field(default_factory=list)
    train_start: float = 0.0

    pending: list[tuple[StepRecord, dict[str, Any]]] = field(default_factory=list)  # CUDA: counted after training
    events: list[tuple[StepRecord, Any]] = field(default_factory=list)  # CUDA: (step, event at its end)
    start_event: Any = None

    def count(self, inputs: dict[str, Any]) -> None:
        keep = {k: inputs[k] for k in ("labels", "attention_mask", "position_ids") if inputs.get(k) is not None}
        step = StepRecord(0, 0, 0, 0.0)
        self.steps.append(step)
        if self.cuda:  # copied without waiting for the GPU; read after training
            self.pending.append((step, {k: v.to("cpu", non_blocking=True) for k, v in keep.items()}))
        else:
            self._fill(step, keep)

    def _fill(self, step: StepRecord, inputs: dict[str, Any]) -> None:
        labels = inputs["labels"]
        trained = int((labels[..., 1:] != IGNORE_INDEX).sum())
        lengths = example_lengths(inputs)
        step.slots, step.real, step.trained = int(labels.numel()), sum(lengths), trained
        step.flops = self.shape.step_flops(lengths, trained)

    def step_ended(self) -> None:
        """Stamp the end of the latest step: a CUDA event (no wait) or the clock."""
        if self.cuda:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.events.append((self.steps[-1], event))
        else:
            self.steps[-1].end = time.perf_counter()

    def settle(self) -> None:
        """After training: the counts and step ends a CUDA run left on the way (one wait for all)."""
        if not self.cuda:
            return
        import torch

        torch.cuda.synchronize()
        for step, inputs in self.pending:
            self._fill(step, inputs)
        for step, event in self.events:
            step.end = self.start_event.elapsed_time(event) / 1000  # seconds after train start
        self.pending, self.events = [], []

    def summary(self, warmup: int) -> dict[str, Any]:
        """Throughput over the steps after ``warmup`` (timed end to end), padding over all steps."""
        self.settle()
        steady = self.steps[warmup:]
        start = self.steps[warmup - 1].end if warmup > 0 else self.train_start
        seconds = max(steady[-1].end - start, 1e-9) if steady else float("nan")
        slots = sum(s.slots for s in self.steps)
        return {
            "steps": len(self.steps), "timed_steps": len(steady), "seconds": seconds,
            "trained_tok_s": sum(s.trained for s in steady) / seconds,
            "total_tok_s": sum(s.real for s in steady) / seconds,
            "flops_s": sum(s.flops for s in steady) / seconds,
            "padding": 1.0 - sum(s.real for s in self.steps) / slots if slots else 0.0,
            "trained_tokens": sum(s.trained for s in self.steps), "real_tokens": sum(s.real for s in self.steps),
            "step_seconds": [round(b.end - a.end, 3) for a, b in zip(self.steps, self.steps[1:])],
        }


def instrument(trainer: Any, profile: Optional["ProfileRequest"] = None) -> Probe:
    """Count every training step's batch and stamp its end; reset the memory peak at train start.
    With ``profile``, record its steps with torch.profiler and write what it says (`ProfileRequest`)."""
    import torch
    from transformers import TrainerCallback

    cuda = trainer.args.device.type == "cuda"
    probe = Probe(ModelShape.of(trainer.model), cuda)
    if profile is not None:
        trainer.add_callback(profile.callback(cuda))
    step = trainer.training_step

    def counted_step(model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        probe.count(inputs)
        return step(model, inputs, *args, **kwargs)

    trainer.training_step = counted_step  # instance attribute: this trainer only

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            reset_peak_memory(cuda)
            if cuda:
                probe.start_event = torch.cuda.Event(enable_timing=True)
                probe.start_event.record()
                probe.train_start = 0.0  # step ends are seconds after this event
            else:
                probe.train_start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            probe.step_ended()

    trainer.add_callback(Clock())
    return probe


@dataclass
class StepWindow:
    """Something recorded over ``steps`` optimizer steps after ``start`` (the warm-up), written under
    ``folder`` as ``NAME-...``: ``open`` starts it at the first step's beginning and ``close`` ends
    it after the last one."""

    folder: Path
    name: str
    start: int
    steps: int = 3

    def callback(self, cuda: bool) -> Any:
        from transformers import TrainerCallback

        window = self

        class Window(TrainerCallback):
            handle: Any = None

            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == window.start and self.handle is None:
                    self.handle = window.open(cuda)

            def on_step_end(self, args, state, control, **kwargs):
                if self.handle is not None and state.global_step >= window.start + window.steps:
                    window.close(self.handle, cuda, state.global_step - window.start)
                    self.handle = None

        return Window()

    def open(self, cuda: bool) -> Any:
        raise NotImplementedError

    def close(self, handle: Any, cuda: bool, steps: int) -> None:
        raise NotImplementedError


@dataclass
class ProfileRequest(StepWindow):
    """Profile the window's steps with torch.profiler and write ``NAME-ops.txt``, the operators by
    their own device time (CUDA) or CPU time, with call counts (how many kernel launches a step
    makes, and which ops dominate), and ``NAME-trace.json``, a Chrome / Perfetto trace of those steps."""

    def open(self, cuda: bool) -> Any:
        import torch

        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        profiler = torch.profiler.profile(activities=activities, record_shapes=False)
        profiler.__enter__()
        return profiler

    def close(self, profiler: Any, cuda: bool, steps: int) -> None:
        import torch

        if cuda:
            torch.cuda.synchronize()
        profiler.__exit__(None, None, None)
        self.folder.mkdir(parents=True, exist_ok=True)
        sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        table = profiler.key_averages().table(sort_by=sort, row_limit=60)
        (self.folder / f"{self.name}-ops.txt").write_text(f"{self.name}: {steps} optimizer steps, sorted by {sort}\n"
                                                          f"{table}\n", encoding="utf-8")
        profiler.export_chrome_trace(str(self.folder / f"{self.name}-trace.json"))


# Operators that read a value back from the device (on a GPU the host waits for all queued work):
# ``.item()`` / ``bool()`` / ``int()`` of a tensor, and those whose result size depends on the values.
READ_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2", "unique_dim",
            "unique_consecutive", "repeat_interleave", "masked_scatter", "equal"}
OWN = ("count", "_fill", "example_lengths")  # the probe's own counting of a batch, left out of the census


@dataclass
class HostReadRequest(StepWindow):
    """Count, over the window's steps, the operators that read a value back from the device, by the
    source line that asked, and write ``NAME-host-reads.txt``; ``per_step`` holds the count per
    optimizer step afterwards.

    On a GPU an operator counts when one of its tensors is on the GPU (a copy to the host that waits
    counts too). On a CPU nothing waits, so every such operator outside data loading is counted, as
    the reads the same step would make on a GPU, and ``.tolist()`` (which needs no operator on a
    CPU tensor) is counted as well.
    """

    per_step: Optional[float] = None

    def open(self, cuda: bool) -> Any:
        import collections

        import torch
        from torch.utils._python_dispatch import TorchDispatchMode

        found: collections.Counter = collections.Counter()

        class Census(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = func.__name__.split(".")[0]
                reads = name in READ_OPS or (name == "index" and any(
                    isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or []) if i is not None))
                if cuda and name in ("_to_copy", "copy_"):
                    reads = _waiting_copy_to_host(name, args, kwargs or {})
                if reads and (not cuda or _on_device(args)):
                    at = _asked_at()
                    if at is not None:
                        found[(name + ("[bool mask]" if name == "index" else ""), at)] += 1
                return func(*args, **(kwargs or {}))

        plain_tolist = torch.Tensor.tolist

        def tolist(tensor: Any) -> Any:
            if tensor.device.type == "cpu" and not cuda:
                at = _asked_at()
                if at is not None:
                    found[("tolist", at)] += 1
            return plain_tolist(tensor)

        mode = Census()
        mode.__enter__()
        torch.Tensor.tolist = tolist
        return mode, found, plain_tolist

    def close(self, handle: Any, cuda: bool, steps: int) -> None:
        import torch

        mode, found, plain_tolist = handle
        torch.Tensor.tolist = plain_tolist
        mode.__exit__(None, None, None)
        self.per_step = sum(found.values()) / max(steps, 1)
        lines = [f"{self.name}: {sum(found.values())} host reads in {steps} optimizer steps "
                 f"({self.per_step:g} per step), by operator and the line that asked"]
        lines += [f"{n:6d}  {op:<24} {at}" for (op, at), n in found.most_common()]
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{self.name}-host-reads.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _asked_at() -> Optional[str]:
    """The innermost line outside torch and this probe that led here; None in data loading (host
    tensors) or in this probe's own counting of a batch."""
    import traceback

    stack = traceback.extract_stack()[:-2]
    if any("torch/utils/data/" in f.filename or (f.filename.endswith("speed_probe.py") and f.name in OWN)
           for f in stack):
        return None
    for frame in reversed(stack):
        if "site-packages/torch/" not in frame.filename and not frame.filename.endswith("speed_probe.py"):
            tail = frame.filename.split("site-packages/")[-1].split("/src/")[-1]
            return f"{tail}:{frame.lineno} ({frame.name})"
    return "?"


def _on_device(args: Any) -> bool:
    import torch
    from torch.utils._pytree import tree_leaves

    return any(isinstance(a, torch.Tensor) and a.device.type != "cpu" for a in tree_leaves(args))


def _waiting_copy_to_host(name: str, args: Any, kwargs: dict[str, Any]) -> bool:
    """Whether ``_to_copy`` / ``copy_`` copies a device tensor to the host and waits for it."""
    import torch

    if name == "_to_copy":  # tensor.to("cpu") / .cpu() / .tolist() of a GPU tensor
        device = kwargs.get("device")
        return (device is not None and torch.device(device).type == "cpu" and args[0].device.type != "cpu"
                and not kwargs.get("non_blocking", False))
    non_blocking = args[2] if len(args) > 2 else kwargs.get("non_blocking", False)
    return args[0].device.type == "cpu" and args[1].device.type != "cpu" and not non_blocking


def reset_peak_memory(cuda: bool) -> None:
    """Start a new peak: CUDA's allocator statistics, or Linux's VmHWM via /proc/self/clear_refs."""
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak resident set size
    except OSError:
        pass  # not Linux, or not allowed: the peak then covers the whole process


def peak_memory(cuda: bool) -> tuple[str, float]:
    """("cuda", MiB) or ("rss", MiB) since the last reset (whole process where it cannot reset)."""
    if cuda:
        import torch

        return "cuda", torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return "rss", int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return "rss", rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def eval_loss(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], tokenize: Any,
              batch_size: int = 8) -> float:
    """Mean cross-entropy per trained token over ``conversations``, in fp32 without autocast, with the
    model's full logits: one plain yardstick for every trained model."""
    import torch

    rows = [tokenize(tokenizer, c) for c in conversations]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            width = max(len(r["input_ids"]) for r in batch)
            ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in batch], device=device)
            mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in batch],
                                device=device)
            labels = torch.tensor([r["labels"] + [IGNORE_INDEX] * (width - len(r["labels"])) for r in batch],
                                  device=device)
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            targets = labels[:, 1:]
            keep = targets != IGNORE_INDEX
            total += float(torch.nn.functional.cross_entropy(logits[:, :-1][keep], targets[keep], reduction="sum"))
            count += int(keep.sum())
    model.train(was_training)
    return total / max(count, 1)


def matmul_peak(device: str, dtype_name: str, size: int = 2048, seconds: float = 2.0) -> float:
    """Best FLOP/s of ``size`` x ``size`` matrix multiplies in ``dtype_name`` over about ``seconds``."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    flops = 2.0 * size**3
    best = 0.0
    deadline = time.perf_counter() + seconds
    torch.matmul(a, b)  # first call builds the kernel
    while time.perf_counter() < deadline:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = max(best, flops / (time.perf_counter() - start))
    return best
