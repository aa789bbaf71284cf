"""The textbook Hugging Face recipe for LoRA fine-tuning of a chat model, written plainly.

This is the reference that ``bench/train_speed.py`` measures tunesmith against: nothing in it is
tuned for speed. It uses only transformers and peft:

- ``AutoModelForCausalLM`` in float32 on the CPU, bfloat16 on a GPU;
- peft LoRA with the given ``r``, ``alpha``, dropout and target modules (``all-linear``);
- the tokenizer's chat template, with labels masked to the assistant turns (each turn trained up
  to and including its end-of-turn token, as tunesmith's ``data.loss_on=assistant`` does);
- ``DataCollatorForSeq2Seq`` padding, and ``transformers.Trainer`` with its defaults for
  everything but the hyperparameters that change the loss (lr, schedule, warmup, seed).

Only the weights are shared with tunesmith: the packaged ``smollm2-135m-instruct`` ships as a
GGUF file, so ``tunesmith.models.loading.resolve_model_path`` gives the converted safetensors
folder, which the recipe then loads with ``from_pretrained`` like any other model folder.

    HF_HUB_OFFLINE=1 python bench/baseline_hf.py --data rows.jsonl --steps 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RecipeSettings:
    """The knobs that change the loss; both sides of the benchmark use the same values."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str = "all-linear"
    batch_size: int = 8
    lr: float = 1e-3
    scheduler: str = "cosine"
    warmup_ratio: float = 0.05
    max_steps: int = -1  # -1: one epoch over the rows
    max_length: int = 512
    seed: int = 42


def read_rows(path: str | Path) -> list[list[dict[str, str]]]:
    """Conversations from a JSONL file of ``{"messages": [{"role": ..., "content": ...}, ...]}``."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["messages"] for line in fh if line.strip()]


def _ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = False) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def tokenize_chat(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, list[int]]:
    """Render the whole conversation, then copy the tokens of each assistant turn into ``labels``.

    A turn spans from the end of the prompt rendered with the generation prompt to the end of the
    conversation rendered up to that turn, cut after its end-of-turn token (the newline the
    template adds after it belongs to no answer). Everything else is -100.
    """
    ids = _ids(tokenizer, messages)
    labels = [-100] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(_ids(tokenizer, messages[:i], generation_prompt=True))
        end = len(_ids(tokenizer, messages[: i + 1]))
        turn = ids[start:end]
        if tokenizer.eos_token_id in turn:
            end = start + turn.index(tokenizer.eos_token_id) + 1
        labels[start:end] = ids[start:end]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def build_dataset(tokenizer: Any, conversations: list[list[dict[str, str]]], max_length: int) -> Any:
    """Tokenized ``datasets.Dataset``; conversations longer than ``max_length`` are dropped."""
    import datasets

    rows = [tokenize_chat(tokenizer, c) for c in conversations]
    return datasets.Dataset.from_list([r for r in rows if len(r["input_ids"]) <= max_length])


def load_model(model_dir: str, device: str) -> Any:
    """float32 on the CPU, bfloat16 on a GPU: what the model cards and tutorials do."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)


def build_trainer(model_dir: str, conversations: list[list[dict[str, str]]], settings: RecipeSettings,
                  device: str, output_dir: str) -> Any:
    """Tokenizer, model, LoRA, dataset, collator and a ``Trainer`` with default arguments."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

    set_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = load_model(model_dir, device)
    model = get_peft_model(model, LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                                             target_modules=settings.target_modules, task_type="CAUSAL_LM"))
    dataset = build_dataset(tokenizer, conversations, settings.max_length)
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=settings.batch_size,
        num_train_epochs=1,
        max_steps=settings.max_steps,
        learning_rate=settings.lr,
        lr_scheduler_type=settings.scheduler,
        warmup_steps=settings.warmup_ratio,
        seed=settings.seed,
        bf16=device.startswith("cuda"),
        use_cpu=device == "cpu",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, padding=True)
    return Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                   processing_class=tokenizer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="JSONL file of {'messages': [...]} rows")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="packaged alias or model folder")
    parser.add_argument("--steps", type=int, default=-1, help="optimizer steps (-1: one epoch)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)

    from tunesmith.models.loading import resolve_model_path

    settings = RecipeSettings(max_steps=args.steps)
    with tempfile.TemporaryDirectory(prefix="baseline-hf-") as tmp:
        trainer = build_trainer(resolve_model_path(args.model), read_rows(args.data), settings, args.device, tmp)
        start = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - start
    print(f"{output.global_step} steps in {seconds:.1f} s; mean training loss {output.training_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
