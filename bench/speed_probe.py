"""Measuring a training run from the outside, the same way for the baseline and for tunesmith.

`instrument(trainer)` counts, for every training step, the token slots of the batch, the real
(non-pad) tokens, the trained tokens (label-bearing targets after the shift) and the useful model
FLOPs, and stamps the end of every step; `peak_memory` reads the peak resident memory (or CUDA
memory) of the training alone. `eval_loss` scores a trained model on held-out conversations with
one plain function, and `matmul_peak` times large matrix multiplies.

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
    end: float = 0.0  # perf_counter at the end of the step


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

    def count(self, inputs: dict[str, Any]) -> None:
        labels = inputs["labels"]
        trained = int((labels[..., 1:] != IGNORE_INDEX).sum())
        lengths = example_lengths(inputs)
        self.steps.append(StepRecord(int(labels.numel()), sum(lengths), trained,
                                     self.shape.step_flops(lengths, trained)))

    def summary(self, warmup: int) -> dict[str, Any]:
        """Throughput over the steps after ``warmup`` (timed end to end), padding over all steps."""
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
            probe.train_start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            probe.steps[-1].end = time.perf_counter()

    trainer.add_callback(Clock())
    return probe


@dataclass
class ProfileRequest:
    """Profile ``steps`` optimizer steps after ``start`` (the warm-up) with torch.profiler and write,
    under ``folder``: ``NAME-ops.txt``, the operators by their own device time (CUDA) or CPU time,
    with call counts (how many kernel launches a step makes, and which ops dominate), and
    ``NAME-trace.json``, a Chrome / Perfetto trace of those steps."""

    folder: Path
    name: str
    start: int
    steps: int = 3

    def callback(self, cuda: bool) -> Any:
        import torch
        from transformers import TrainerCallback

        request = self
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])

        class Profile(TrainerCallback):
            profiler: Any = None

            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == request.start and self.profiler is None:
                    self.profiler = torch.profiler.profile(activities=activities, record_shapes=False)
                    self.profiler.__enter__()

            def on_step_end(self, args, state, control, **kwargs):
                if self.profiler is not None and state.global_step >= request.start + request.steps:
                    if cuda:
                        torch.cuda.synchronize()
                    self.profiler.__exit__(None, None, None)
                    request.write(self.profiler, cuda, state.global_step - request.start)
                    self.profiler = None

        return Profile()

    def write(self, profiler: Any, cuda: bool, steps: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        table = profiler.key_averages().table(sort_by=sort, row_limit=60)
        (self.folder / f"{self.name}-ops.txt").write_text(f"{self.name}: {steps} optimizer steps, sorted by {sort}\n"
                                                          f"{table}\n", encoding="utf-8")
        profiler.export_chrome_trace(str(self.folder / f"{self.name}-trace.json"))


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
