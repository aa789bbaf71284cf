"""``GrpoTrainer``: the Trainer subclass behind ``train.trainer=grpo`` (``tunesmith.training.grpo``
describes the method and registers it): sampling, scoring, the loss and the logs."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any, Optional

import torch

from tunesmith.config.schema import GrpoConfig
from tunesmith.errors import ConfigError, DataError
from tunesmith.training.guarded_trainer import TunesmithTrainer
from tunesmith.training.logged_means import MeanLogs
from tunesmith.training.policy_gradient import completion_logps, completion_mask, group_advantages, policy_loss
from tunesmith.training.reference import Reference
from tunesmith.training.sequence_logps import precision_context

PROMPT_KEYS = ("prompt_ids", "prompt_attention_mask", "references")  # what the prompt collator returns


def sampling_seed(seed: int, step: int, micro_batch: int, process: int = 0) -> int:
    """The sampling seed of one micro-batch: the same (seed, optimizer step, micro-batch, process)
    gives the same completions, whatever ran before (a resumed run included). Each process of a
    multi-process run draws its own samples; process 0 draws what a one-process run draws.

    Example:
        >>> sampling_seed(42, 0, 0) == sampling_seed(42, 0, 0) != sampling_seed(42, 1, 0) != sampling_seed(42, 1, 0, 1)
        True
    """
    key = f"grpo:{seed}:{step}:{micro_batch}" + (f":{process}" if process else "")
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class GrpoTrainer(MeanLogs, TunesmithTrainer):
    """``transformers.Trainer`` for GRPO (see the module docstring).

    Args:
        settings: ``train.grpo``.
        reference: with ``kl_weight > 0``, the reference model: ``adapter_off`` (a new adapter) or
            ``copy`` (the starting trainable weights); see ``tunesmith.training.reference``.
        rewards: callables ``fn(completions, references, prompts) -> list[float]`` with ``name`` and
            ``weight`` attributes (``tunesmith.evaluation.rewards.build_rewards`` makes them).
        *args, **kwargs: the Trainer's own; ``processing_class`` (the tokenizer) decodes completions.
    """

    loss_is_scaled_for_ga = True  # divided by the completion tokens of the whole accumulated batch
    head_only_at_completions = True  # train.logits=label_only: the output head runs at completion positions only

    def __init__(self, *args: Any, settings: GrpoConfig, rewards: list[Any], reference: Optional[str] = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not rewards:
            raise ConfigError("train.grpo.rewards: train.trainer=grpo needs at least one reward function")
        if self.processing_class is None:
            raise ConfigError("train.trainer=grpo: the trainer needs the tokenizer (processing_class) to decode "
                              "completions for the reward functions")
        self.settings = settings
        self.rewards = list(rewards)
        self.stop_ids = _stop_ids(self.model, self.processing_class)
        pad = getattr(self.processing_class, "pad_token_id", None)
        self.pad_id = pad if pad is not None else self.stop_ids[0]
        # The model as training starts: the adapter switched off, or its starting trainable weights.
        if settings.kl_weight > 0 and reference is None:
            reference = "adapter_off" if hasattr(self.model, "disable_adapter") else "copy"
        self.reference = Reference(self.model, reference) if settings.kl_weight > 0 else None
        self._parts: dict[str, list[float]] = defaultdict(list)  # logged means since the last log

    # -- samples ---------------------------------------------------------------------------------
    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> tuple[list, Any]:
        """The optimizer step's micro-batches, each with its sampled completions, rewards and advantages,
        and the number of completion tokens of them all (the loss's divisor)."""
        batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        rolled = [self.rollout(batch, micro) for micro, batch in enumerate(batches)]
        count = torch.tensor(sum(int(r["score_mask"].sum()) for r in rolled), device=device, dtype=torch.float32)
        if self.args.world_size > 1 and self.args.average_tokens_across_devices:
            # Gradients are averaged over processes: divide by the tokens of all of them over their number.
            count = self.accelerator.gather(count[None]).sum() / self.args.world_size
        return rolled, count

    def rollout(self, batch: dict[str, Any], micro_batch: int) -> dict[str, Any]:
        """Sample, decode and score ``group_size`` completions per prompt of ``batch``: the model's inputs
        (prompt + completion), the scored-token mask, the advantages (and the reference's log-probs)."""
        missing = [k for k in PROMPT_KEYS if k not in batch]
        if missing:
            raise DataError(f"train.trainer=grpo: a batch lacks {', '.join(missing)}; grpo trains on prompt rows "
                            "({'prompt_ids': [...], 'reference': ...}, e.g. data=arith-prompts) batched by the "
                            "prompt collator")
        group = self.settings.group_size
        device = self.args.device
        prompt_ids = batch["prompt_ids"].to(device).repeat_interleave(group, dim=0)
        prompt_mask = batch["prompt_attention_mask"].to(device).repeat_interleave(group, dim=0)
        # A seed per process: with one seed, processes holding the same prompt would sample the same
        # completions, and the others would share their random draws.
        seed = sampling_seed(self.args.seed, self.state.global_step, micro_batch, self.args.process_index)
        completions = self.sample(prompt_ids, prompt_mask, seed)
        mask, stopped = completion_mask(completions, self.stop_ids)
        texts = self._decode(completions, mask)
        prompts = [p for p in self._prompt_texts(batch["prompt_ids"], batch["prompt_attention_mask"])
                   for _ in range(group)]
        references = [r for r in batch["references"] for _ in range(group)]
        reward = self.score(texts, references, prompts, self._parts)
        advantages = group_advantages(reward, group, self.settings.scale_rewards)
        self._parts["reward_std"].append(float(reward.view(-1, group).std(dim=1).mean()))
        self._parts["completion_length"].append(float(mask.sum(1).float().mean()))
        self._parts["clipped_ratio"].append(float((~stopped).float().mean()))
        inputs = {"input_ids": torch.cat([prompt_ids, completions], dim=1),
                  "attention_mask": torch.cat([prompt_mask, mask], dim=1),
                  "score_mask": torch.cat([torch.zeros_like(prompt_mask), mask], dim=1),
                  "advantages": advantages.to(device)}
        if self.settings.kl_weight > 0:
            with self.precision_context(), self.reference.active(self.model) as reference:
                inputs["ref_logps"] = completion_logps(reference, inputs["input_ids"], inputs["attention_mask"],
                                                       inputs["score_mask"], self.settings.temperature,
                                                       head_only_at_completions=self.head_only_at_completions)
        return inputs

    def precision_context(self) -> Any:
        """The training steps' mixed precision for sampling and the reference: ``generate`` does not go
        through the prepared model's autocast, and frozen weights may be held in bf16 (``train.frozen_weights``)."""
        return precision_context(self.args)

    def sample(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, seed: int, greedy: bool = False) -> torch.Tensor:
        """Completion token ids (N, up to ``max_new_tokens``) for left-padded prompts, in eval mode, seeded."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()  # no dropout; gradient checkpointing stays off so the KV cache is used
        s = self.settings
        options = ({"do_sample": False} if greedy else
                   {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k})
        devices = [prompt_ids.device] if prompt_ids.device.type == "cuda" else []
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices), self.precision_context():
                torch.manual_seed(seed)
                out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=s.max_new_tokens,
                                     eos_token_id=self.stop_ids, pad_token_id=self.pad_id, use_cache=True, **options)
        finally:
            model.train(was_training)
        return out[:, prompt_ids.shape[1]:]

    def score(self, completions: list[str], references: list[Optional[str]], prompts: list[str],
              record: dict[str, list[float]]) -> torch.Tensor:
        """The weighted sum of the reward functions for each completion; appends the batch means
        (``reward``, ``reward/<name>``) to ``record``."""
        total = torch.zeros(len(completions), dtype=torch.float32)
        for fn in self.rewards:
            values = torch.tensor(fn(completions, references, prompts), dtype=torch.float32)
            record[f"reward/{_reward_name(fn)}"].append(float(values.mean()))
            total += float(getattr(fn, "weight", 1.0)) * values
        record["reward"].append(float(total.mean()))
        return total

    # -- loss --------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The GRPO loss of one micro-batch (see `policy_loss`); divided by the step's completion tokens."""
        if "score_mask" not in inputs:
            raise DataError("train.trainer=grpo: compute_loss got a batch without sampled completions; "
                            "its batches come from GrpoTrainer.get_batch_samples")
        mask = inputs["score_mask"]
        logps = completion_logps(model, inputs["input_ids"], inputs["attention_mask"], mask,
                                 self.settings.temperature, head_only_at_completions=self.head_only_at_completions)
        scored = mask[:, 1:]
        divisor = num_items_in_batch if num_items_in_batch is not None else scored.sum()
        loss, kl_sum = policy_loss(logps, inputs["advantages"], scored, divisor, inputs.get("ref_logps"),
                                   self.settings.kl_weight)
        if self.settings.kl_weight > 0:
            self._parts["kl"].append(float(kl_sum) / max(1, int(scored.sum())))
        return (loss, None) if return_outputs else loss

    # -- evaluation --------------------------------------------------------------------------------
    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict:
        """Mean reward of one greedy completion per eval prompt: ``eval_reward``, ``eval_reward/<name>``,
        and ``eval_loss = -eval_reward`` (so lower is better, as for a loss)."""
        loader = self.get_eval_dataloader(eval_dataset)
        sums: dict[str, float] = defaultdict(float)
        count = 0
        for batch in loader:
            n = len(batch["references"])
            completions = self.sample(batch["prompt_ids"].to(self.args.device),
                                      batch["prompt_attention_mask"].to(self.args.device), 0, greedy=True)
            mask, _ = completion_mask(completions, self.stop_ids)
            means: dict[str, list[float]] = defaultdict(list)
            self.score(self._decode(completions, mask), list(batch["references"]),
                       self._prompt_texts(batch["prompt_ids"], batch["prompt_attention_mask"]), means)
            for name, values in means.items():
                sums[name] += values[0] * n
            count += n
        key = f"{metric_key_prefix}_"
        metrics = {key + name: value / max(1, count) for name, value in sums.items()}
        if f"{key}reward" in metrics:
            metrics[f"{key}loss"] = -metrics[f"{key}reward"]
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # -- logs --------------------------------------------------------------------------------------

    # -- text --------------------------------------------------------------------------------------
    def _decode(self, completions: torch.Tensor, mask: torch.Tensor) -> list[str]:
        lengths = mask.sum(1).tolist()
        return self.processing_class.batch_decode([ids[:n] for ids, n in zip(completions.tolist(), lengths)],
                                                  skip_special_tokens=True)

    def _prompt_texts(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> list[str]:
        rows = [[t for t, m in zip(ids, keep) if m] for ids, keep in zip(prompt_ids.tolist(), prompt_mask.tolist())]
        return self.processing_class.batch_decode(rows, skip_special_tokens=True)


def _reward_name(fn: Any) -> str:
    return str(getattr(fn, "name", getattr(fn, "__name__", type(fn).__name__)))


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokens a completion ends at: the tokenizer's EOS and the model's generation EOS ids."""
    ids: list[int] = []
    generation = getattr(model, "generation_config", None)
    for value in (getattr(tokenizer, "eos_token_id", None), getattr(generation, "eos_token_id", None)):
        for i in (value if isinstance(value, (list, tuple)) else [value]):
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    if not ids:
        raise ConfigError("train.trainer=grpo: neither the tokenizer nor the model names an EOS token, so "
                          "completions could not end; set tokenizer.eos_token")
    return ids


