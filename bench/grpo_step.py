"""Seconds per GRPO optimizer step, split into sampling and the training forward / backward.

SmolLM2-135M-Instruct loaded as the default config loads it, with the default LoRA adapter, on
arith prompts rendered with the chat template (system prompt included) up to the assistant's turn.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/grpo_step.py --batch 4 --group 8 --max-new 128
    HF_HUB_OFFLINE=1 .venv/bin/python bench/grpo_step.py --adapter runs/<arith sft run> --kl 0.05
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--kl", type=float, default=0.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--adapter", default=None, help="a run folder whose adapter to continue (an SFT run)")
    parser.add_argument("--out", default="/tmp/grpo-bench")
    opts = parser.parse_args()

    import torch
    from datasets import Dataset
    from transformers import TrainingArguments

    from tunesmith.api.model_setup import load_base_model, load_tokenizer_and_task, runtime
    from tunesmith.config import load_config
    from tunesmith.config.schema import GrpoConfig
    from tunesmith.data.builtin.arith import build_arith
    from tunesmith.data.prompt_batches import PromptCollator
    from tunesmith.evaluation.rewards import build_rewards
    from tunesmith.models.adapters import apply_adapter
    from tunesmith.training.grpo_trainer import GrpoTrainer

    cfg = load_config(overrides=["train.trainer=grpo", f"model.device={opts.device}"])
    device, precision = runtime(cfg)
    tokenizer, task = load_tokenizer_and_task(cfg)
    base = load_base_model(cfg, tokenizer, task, device, precision, [])
    if opts.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(base, opts.adapter, is_trainable=True)
    else:
        model = apply_adapter(base, cfg.peft, task)
    system = "Solve the problem step by step. End with #### and the final number."
    rows = [{"prompt_ids": tokenizer.apply_chat_template(
                [{"role": "system", "content": system}, r["messages"][0]], add_generation_prompt=True,
                tokenize=True, return_dict=False), "reference": r["answer"]}
            for r in build_arith("train", n=opts.batch * opts.steps)]
    settings = GrpoConfig(rewards=["exact_match", "number_format"], group_size=opts.group,
                          max_new_tokens=opts.max_new, kl_weight=opts.kl)
    args = TrainingArguments(output_dir=opts.out, per_device_train_batch_size=opts.batch, max_steps=opts.steps,
                             learning_rate=1e-5, logging_steps=1, save_strategy="no", report_to=[],
                             remove_unused_columns=False, use_cpu=device == "cpu", bf16=precision == "bf16",
                             disable_tqdm=True)
    trainer = GrpoTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                          data_collator=PromptCollator(tokenizer.pad_token_id), processing_class=tokenizer,
                          settings=settings, rewards=build_rewards(settings))
    sampling: list[float] = []
    sample = trainer.sample

    def timed(*a, **kw):
        start = time.perf_counter()
        out = sample(*a, **kw)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        sampling.append(time.perf_counter() - start)
        return out

    trainer.sample = timed
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    steps = [r for r in trainer.state.log_history if "loss" in r]
    print(json.dumps({"device": device, "precision": precision, "threads": torch.get_num_threads(),
                      "batch": opts.batch, "group": opts.group, "max_new_tokens": opts.max_new,
                      "seconds_per_step": total / opts.steps, "sampling_per_step": sum(sampling) / opts.steps,
                      "train_per_step": (total - sum(sampling)) / opts.steps,
                      "logs": steps}, indent=1))


if __name__ == "__main__":
    main()
