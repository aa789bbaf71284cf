"""Preference trainers: ``dpo`` (sigmoid / IPO / SimPO losses), ``orpo``, ``kto`` and ``reward``.

Each is a ``TunesmithTrainer`` (atomic checkpoints, exact resume, NaN guard) whose ``compute_loss``
scores whole answers (``tunesmith.training.sequence_logps``) and applies a loss of
``tunesmith.training.preference_losses``. A pair batch holds its chosen answers first and its
rejected answers after them (``batch["pairs"]`` of each), so one forward pass scores both, in
padded or padding-free rows alike; the reference runs a second forward without gradients
(``tunesmith.training.reference``), or its log-probabilities come with the batch (``ref_logps``,
``train.preference.reference=precomputed``).

The loss is the mean over the pairs (examples, for KTO) of the micro-batch; the Trainer divides it
by the accumulation steps, so equal micro-batches give the gradient of the whole batch. The logs
gain ``rewards/chosen``, ``rewards/rejected``, ``rewards/margin`` and ``rewards/accuracy`` (the
share of pairs whose chosen answer gets the higher implicit reward), with ``eval_`` in front
during evaluation.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from tunesmith.config.schema import PreferenceConfig
from tunesmith.training.guarded_trainer import TunesmithTrainer
from tunesmith.training.logged_means import MeanLogs
from tunesmith.training.losses import DEFAULT_CHUNK_ROWS
from tunesmith.training.preference_losses import (PairScores, dpo_loss, implicit_rewards, kto_loss, orpo_loss,
                                                   reward_model_loss)
from tunesmith.training.reference import Reference
from tunesmith.training.sequence_logps import model_inputs, sequence_logps


class ScoringTrainer(MeanLogs, TunesmithTrainer):
    """Scores whole answers with the trained model and, when the loss needs one, the reference."""

    name = "dpo"  # the train.trainer name, for messages
    needs_reference = True
    loss_is_scaled_for_ga = False  # a mean per micro-batch: the Trainer divides by the accumulation steps

    def __init__(self, *args: Any, settings: PreferenceConfig, reference: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.reference_choice = reference
        self.reference = (Reference(self.model, reference) if reference in ("adapter_off", "copy") else None)
        self.label_only = True  # train.logits (set by apply_speed_settings)
        self.logits_chunk = DEFAULT_CHUNK_ROWS

    def scores(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Log-probabilities and token counts of every sequence of the batch, and the reference's."""
        logps, counts = sequence_logps(model, inputs, self.logits_chunk, self.label_only)
        ref = inputs.get("ref_logps")
        if ref is not None:
            ref = ref.to(logps.device, logps.dtype)
        elif self.needs_reference and self.reference is not None:
            with self.reference.active(model) as frozen:
                ref = sequence_logps(frozen, inputs, self.logits_chunk, self.label_only)[0]
        elif self.needs_reference:
            raise RuntimeError(f"train.trainer={self.name}: no reference log-probabilities in the batch and no "
                               "reference model; set train.preference.reference")
        return logps, counts, ref

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation: the loss only (the metrics go to the logs through ``note``)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def _note(self, model: Any, **values: Any) -> None:
        self.note(**{(k if model.training else f"eval_{k}"): v for k, v in values.items()})


class PairTrainer(ScoringTrainer):
    """``dpo``: the sigmoid, IPO or SimPO loss of each pair (``train.preference.loss``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.needs_reference = self.settings.loss != "simpo"

    def pair_scores(self, model: Any, inputs: dict[str, Any]) -> PairScores:
        """The batch's chosen and rejected log-probabilities (first and second half of its sequences)."""
        logps, counts, ref = self.scores(model, inputs)
        pairs = logps.shape[0] // 2
        return PairScores(logps[:pairs], logps[pairs:], counts[:pairs], counts[pairs:],
                          None if ref is None else ref[:pairs], None if ref is None else ref[pairs:])

    def pair_loss(self, s: PairScores) -> torch.Tensor:
        """Per pair: the ``train.preference.loss``, plus ``sft_weight`` x the chosen answer's NLL per token."""
        p = self.settings
        loss = dpo_loss(s, p.beta, p.loss, p.simpo_gamma)
        if p.sft_weight > 0:
            loss = loss + p.sft_weight * (-s.chosen / s.chosen_tokens.clamp(min=1))
        return loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        s = self.pair_scores(model, inputs)
        loss = self.pair_loss(s).mean()
        chosen, rejected = implicit_rewards(s, self.settings.beta)
        c_tok, r_tok = s.per_token()
        self._note(model, **{"rewards/chosen": chosen, "rewards/rejected": rejected,
                             "rewards/margin": chosen - rejected, "rewards/accuracy": (chosen > rejected).float(),
                             "logps/chosen": c_tok.detach(), "logps/rejected": r_tok.detach()})
        return (loss, None) if return_outputs else loss


class OddsRatioTrainer(PairTrainer):
    """``orpo``: the chosen answers' NLL plus ``train.preference.orpo_weight`` x the odds-ratio term;
    no reference model."""

    name = "orpo"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.needs_reference = False

    def pair_loss(self, s: PairScores) -> torch.Tensor:
        """Per pair: the chosen answer's NLL per token plus ``orpo_weight`` x the odds-ratio term."""
        loss, ratio_term = orpo_loss(s, self.settings.orpo_weight)
        self.note(**{"orpo/odds_ratio_loss" if self.model.training else "eval_orpo/odds_ratio_loss": ratio_term})
        return loss


class UnpairedTrainer(ScoringTrainer):
    """``kto``: desirable and undesirable answers, each scored against the reference."""

    name = "kto"

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        p = self.settings
        logps, _, ref = self.scores(model, inputs)
        desirable = inputs["desirable"].to(logps.device)
        per_example, z = kto_loss(logps, ref, desirable, p.beta, p.desirable_weight, p.undesirable_weight)
        loss = per_example.mean()
        rewards = p.beta * (logps - ref).detach()
        values: dict[str, Any] = {"kto/reference_point": z}
        if desirable.any():
            values["rewards/desirable"] = rewards[desirable.bool()]
        if (~desirable.bool()).any():
            values["rewards/undesirable"] = rewards[~desirable.bool()]
        self._note(model, **values)
        return (loss, None) if return_outputs else loss


class RewardModelTrainer(ScoringTrainer):
    """``reward``: a sequence classifier with one output trained so the chosen answer scores higher."""

    name = "reward"
    needs_reference = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        scores = model(**model_inputs(inputs)).logits.squeeze(-1).float()
        pairs = scores.shape[0] // 2
        chosen, rejected = scores[:pairs], scores[pairs:]
        loss = reward_model_loss(chosen, rejected).mean()
        self._note(model, **{"rewards/chosen": chosen.detach(), "rewards/rejected": rejected.detach(),
                             "rewards/margin": (chosen - rejected).detach(),
                             "rewards/accuracy": (chosen > rejected).float()})
        return (loss, None) if return_outputs else loss
