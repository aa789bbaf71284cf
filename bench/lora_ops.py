"""Operators one training forward and backward dispatches, with peft's LoRA layers and with fused ones.

On a GPU a small model's step is bound by how many kernels it launches, not by its arithmetic.
This counts the ATen operators that reach a kernel (after autograd and autocast, through a
``TorchDispatchMode``) for one forward and backward of a SmolLM2 shape from ``bench/gpu/shapes.json``
with random weights, the way each device trains it:

- ``gpu``: bf16 weights, fp32 adapters (peft's default over a bf16 model), bf16 autocast;
- ``cpu``: fp32 weights under bf16 autocast, frozen linear weights held in bf16 (tunesmith's CPU default).

It runs on the CPU; the LoRA layers dispatch the same operators on CUDA (attention and the
optimizer are outside what changes). Views and metadata-only operators are counted apart.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/lora_ops.py
    HF_HUB_OFFLINE=1 .venv/bin/python bench/lora_ops.py --shape smollm2-1.7b --tokens 256
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Operators that make no kernel (they only describe a tensor differently).
VIEW_OPS = {"view", "_unsafe_view", "t", "transpose", "reshape", "expand", "slice", "select", "unsqueeze", "squeeze",
            "permute", "alias", "detach", "as_strided", "split", "split_with_sizes", "unbind", "lift_fresh"}


def count_ops(model, ids, fused: bool) -> collections.Counter:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from tunesmith.training.fused_lora import fused_lora_layers

    counts: collections.Counter = collections.Counter()

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            counts[func.__name__.split(".")[0]] += 1
            return func(*args, **(kwargs or {}))

    model.zero_grad(set_to_none=True)
    with fused_lora_layers(model, fused), Count():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(input_ids=ids)
        loss = out.logits.float().logsumexp(-1).mean()
        loss.backward()
    return counts


def build(shape: str, setting: str):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**json.loads((HERE / "gpu" / "shapes.json").read_text())[shape])
    torch.manual_seed(0)
    dtype = torch.bfloat16 if setting == "gpu" else torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0,
                                             task_type="CAUSAL_LM"))
    model.train()
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="smollm2-135m", help="a name in bench/gpu/shapes.json")
    parser.add_argument("--tokens", type=int, default=128, help="tokens in the one row of the batch")
    opts = parser.parse_args(argv)

    import torch

    from tunesmith.training.fused_lora import fusable
    from tunesmith.training.speed import frozen_linear_weights

    print(f"{opts.shape}, one row of {opts.tokens} tokens, one forward and backward")
    print("| setting | LoRA layers | peft: operators (views) | fused: operators (views) | fused / peft | per LoRA layer |")
    print("|---|---|---|---|---|---|")
    for setting in ("gpu", "cpu"):
        model = build(opts.shape, setting)
        layers = sum(1 for m in model.modules() if fusable(m))
        ids = torch.randint(0, model.config.vocab_size, (1, opts.tokens))
        runs = {}
        with frozen_linear_weights(model, setting == "cpu"):  # train.frozen_weights=auto on a CPU
            for fused in (False, True):
                c = count_ops(model, ids, fused)
                views = sum(n for op, n in c.items() if op in VIEW_OPS)
                runs[fused] = (sum(c.values()) - views, views, c)
        peft, fused = runs[False], runs[True]
        print(f"| {setting} | {layers} | {peft[0]:,} ({peft[1]:,}) | {fused[0]:,} ({fused[1]:,}) | "
              f"{fused[0] / peft[0]:.2f}x | {(peft[0] - fused[0]) / layers:.1f} fewer |")
        changed = sorted((op for op in set(peft[2]) | set(fused[2])
                          if op not in VIEW_OPS and peft[2][op] != fused[2][op]), key=lambda op: -peft[2][op])
        print("  peft -> fused: " + ", ".join(f"{op} {peft[2][op]:,} -> {fused[2][op]:,}" for op in changed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
