"""Held-out chosen / rejected pairs, measured before and after preference training.

- ``pair_accuracy``: the share of pairs whose chosen answer the model finds more likely than the
  rejected one (summed log-probability; for a reward model, the higher score). Measured for the
  starting and the tuned model alike.
- ``reward_accuracy`` / ``reward_margin`` (tuned model, trainers with a reference): the implicit
  reward ``beta * (log p(y|x) - log p_ref(y|x))`` of each answer, with the starting model as the
  reference: the share of pairs whose chosen answer gets the higher reward, and the mean of
  reward(chosen) - reward(rejected). The starting model *is* the reference of these trainers, so
  its held-out log-probabilities, measured before training, are the reference's.
"""

from __future__ import annotations

from typing import Any, Optional

from tunesmith.api.model_setup import ModelContext


def pair_scores(ctx: ModelContext, dataset: Any, reward_model: bool, desc: str) -> dict[str, list[float]]:
    """Per held-out pair: the chosen and the rejected answers' log-probability (or reward-model score)."""
    from tunesmith.api.choices.batching import build_collator
    from tunesmith.data.preference_collators import preference_collator
    from tunesmith.training.preference import split_pairs
    from tunesmith.training.sequence_logps import score_sequences

    task = "sequence_classification" if reward_model else "causal_lm"
    collator = preference_collator("preference", build_collator("auto", task, ctx.tokenizer, "none", ctx.device))
    size = ctx.config.eval.batch_size
    values = score_sequences(ctx.model, dataset, collator, size, ctx.autocast(), desc, reward_model)
    chosen, rejected = split_pairs(values, size)
    return {"chosen": chosen, "rejected": rejected}


def pair_summary(scores: dict[str, list[float]], reference: Optional[dict[str, list[float]]] = None,
                 beta: float = 0.1) -> dict[str, Any]:
    """``pair_accuracy`` of ``scores``, and with ``reference`` the implicit-reward accuracy and margin.

    Example:
        >>> pair_summary({"chosen": [-1.0, -4.0], "rejected": [-2.0, -3.0]})["pair_accuracy"]
        0.5
    """
    c, r = scores["chosen"], scores["rejected"]
    out: dict[str, Any] = {"pairs": len(c), "pair_accuracy": sum(a > b for a, b in zip(c, r)) / max(len(c), 1)}
    if reference is not None:
        rc = [beta * (a - b) for a, b in zip(c, reference["chosen"])]
        rr = [beta * (a - b) for a, b in zip(r, reference["rejected"])]
        out["reward_accuracy"] = sum(a > b for a, b in zip(rc, rr)) / max(len(rc), 1)
        out["reward_margin"] = sum(a - b for a, b in zip(rc, rr)) / max(len(rc), 1)
    return out


def describe_pairs(summary: dict[str, Any]) -> str:
    """``held-out pairs (200): chosen preferred 61.0%; reward accuracy 93.5%, mean margin 1.234``."""
    text = f"held-out pairs ({summary['pairs']}): chosen preferred {summary['pair_accuracy']:.1%}"
    if "reward_accuracy" in summary:
        text += f"; reward accuracy {summary['reward_accuracy']:.1%}, mean margin {summary['reward_margin']:.3f}"
    return text


def evaluate_pairs(ctx: ModelContext, dataset: Any) -> dict[str, Any]:
    """``tunesmith eval`` of held-out pairs: ``pair_accuracy`` of ``ctx.model`` and, for a run of a
    trainer with a reference (``dpo``, ``kto``), ``reward_accuracy`` / ``reward_margin`` against its
    starting model: the base with the run's adapter switched off, or the adapter it continued
    (``model.adapter``), loaded next to the run's own."""
    from tunesmith.api.choices.task import reference_needed, scores_answers

    cfg = ctx.config
    reward_model = scores_answers(cfg.train.trainer)
    scores = pair_scores(ctx, dataset, reward_model, "Scoring held-out pairs")
    from tunesmith.errors import ConfigError

    reference, note = None, None
    if reference_needed(cfg.train.trainer, cfg.train.preference):
        note = ("reward accuracy needs the starting model; a fully fine-tuned run does not keep it (evaluate the "
                "base with --base to compare)")
        if hasattr(ctx.model, "disable_adapter"):
            try:
                reference, note = _starting_model_scores(ctx, dataset), None
            except ConfigError as err:  # the adapter the run continued is gone
                note = f"reward accuracy not measured: {err}"
    summary = pair_summary(scores, reference, cfg.train.preference.beta)
    if note:
        summary["reward_note"] = note
    return summary


def _starting_model_scores(ctx: ModelContext, dataset: Any) -> dict[str, list[float]]:
    """Pair scores of the model the run started from (see ``evaluate_pairs``)."""
    model, start = ctx.model, ctx.config.model.adapter
    if not start:
        with model.disable_adapter():
            return pair_scores(ctx, dataset, False, "Scoring held-out pairs (starting model)")
    from tunesmith.models.start_adapter import adapter_folder

    active = model.active_adapter
    model.load_adapter(str(adapter_folder(start, ctx.config.model.name_or_path)), adapter_name="starting")
    try:
        model.set_adapter("starting")
        return pair_scores(ctx, dataset, False, "Scoring held-out pairs (starting model)")
    finally:
        model.set_adapter(active)
        model.delete_adapter("starting")
