"""``train.trainer=grpo``: group relative policy optimisation with rewards a program computes.

Rows are prompts (``prompt_ids``: the prompt rendered with the chat template up to the assistant's
turn, as inference feeds it; ``reference``: the expected answer or None), batched left-padded by
the prompt collator (``prompt_ids``, ``prompt_attention_mask``, ``references``). At the start of
each optimizer step, for every micro-batch of ``train.batch_size`` prompts:

1. the current model samples ``train.grpo.group_size`` completions per prompt, all of them in one
   ``generate`` call (eval mode, KV cache, sampling seeded by (``train.seed``, step, micro-batch,
   process), so a resumed run samples what an unbroken run samples and each process of a
   multi-process run samples its own completions);
2. the reward functions score the decoded completions; their weighted sum is the reward, and
   each completion's advantage is its reward against its group's: ``(r - mean) / (std + 1e-4)``
   (``train.grpo.scale_rewards=false``: ``r - mean``);
3. with ``train.grpo.kl_weight > 0``, the model as training started scores the completions too
   (`tunesmith.training.reference`).

The loss of a micro-batch is ``sum over completion tokens of (-advantage * ratio + kl_weight * k3)``
divided by the completion tokens of the whole optimizer step (counted when the step's samples
are drawn), so gradient accumulation gives the gradients of one big batch
(`tunesmith.training.policy_gradient`). Completion tokens count up to and including the first
stop token (EOS / end of turn). Each sample is used for one update, so the ratio is 1.

The logs gain ``reward``, ``reward_std`` (mean spread within a group), ``reward/<name>`` per reward
function, ``completion_length`` (tokens), ``clipped_ratio`` (share of completions cut at
``max_new_tokens``) and ``kl``. Evaluation during training samples one greedy completion per eval
prompt: ``eval_reward`` (and ``eval_reward/<name>``), with ``eval_loss = -eval_reward`` so
``train.keep_best`` and early stopping keep the highest reward.
"""

from __future__ import annotations

from typing import Any, Optional

from tunesmith.errors import ConfigError
from tunesmith.config.vocabulary import Task
from tunesmith.training.trainers import register_trainer


# Prompts and their completions are left-padded rows, one sequence each: data.packing=auto is none, so
# the model's own attention runs (not the per-example attention of padding-free rows).
@register_trainer("grpo", tasks=(Task.CAUSAL_LM,), rows="prompt", one_example_per_row=True, settings="grpo",
                  reference=True)
def build_grpo_trainer(model: Any, args: Any, train_dataset: Any, eval_dataset: Any, data_collator: Any,
                       callbacks: list[Any], processing_class: Any = None, grpo: Optional[Any] = None,
                       rewards: Optional[list[Any]] = None, reference: Optional[str] = None) -> Any:
    """GRPO on prompt rows with the reward functions of ``train.grpo.rewards`` (see the module docstring);
    ``reference``: the KL penalty's reference model (``adapter_off`` / ``copy``), decided by the run."""
    from transformers import PrinterCallback, ProgressCallback

    from tunesmith.config.schema import GrpoConfig
    from tunesmith.training.grpo_trainer import GrpoTrainer

    if rewards is None:
        raise ConfigError("train.trainer=grpo: no reward functions were passed; tunesmith builds them from "
                          "train.grpo.rewards (tunesmith.evaluation.rewards.build_rewards)")
    trainer = GrpoTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                          data_collator=data_collator, callbacks=callbacks, processing_class=processing_class,
                          settings=grpo or GrpoConfig(), rewards=rewards, reference=reference)
    for default in (PrinterCallback, ProgressCallback):  # replaced by tunesmith's progress bar
        trainer.remove_callback(default)
    return trainer
