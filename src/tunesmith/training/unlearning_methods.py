"""The unlearning methods as ``Trainer`` subclasses, each overriding one term of the loss.

``GradAscent`` -> ``GradDiff`` -> ``NPO``: ``GradAscent.compute_loss`` runs the forget forward pass
and adds ``forget_weight * forget_term`` and ``retain_term``; ``GradDiff`` adds the retain-set NLL
as its retain term; ``NPO`` replaces the forget term with the preference loss against a frozen
reference. Evaluation batches get the plain NLL. The table of losses is in
``tunesmith.training.unlearning``, which registers the methods as ``train.trainer`` names.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any, Optional

import torch
import torch.nn.functional as F

from tunesmith.config.schema import UnlearningConfig
from tunesmith.training.guarded_trainer import TunesmithTrainer
from tunesmith.training.logged_means import MeanLogs
from tunesmith.training.unlearning import RETAIN, model_inputs, sequence_nll


class GradAscent(MeanLogs, TunesmithTrainer):
    """Gradient ascent on the forget set: ``-w_f * NLL_forget``."""

    name = "grad_ascent"  # its train.trainer name, for messages
    uses_retain = False  # whether the loss has a retain term
    loss_is_scaled_for_ga = False  # a mean per micro-batch: the Trainer divides by grad_accum

    def __init__(self, *args: Any, settings: UnlearningConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self._parts: dict[str, list[float]] = defaultdict(list)  # logged means since the last log

    @classmethod
    def extra_inputs(cls, model: Any) -> dict[str, Any]:
        """Keyword arguments this method needs beyond the Trainer's own, built from ``model``."""
        return {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """``forget_weight * forget_term`` plus the retain term; the plain loss while evaluating."""
        if not model.training:  # evaluation: the ordinary loss of the eval set
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        forget = {k: v for k, v in inputs.items() if not k.startswith(RETAIN)}
        outputs = model(**model_inputs(forget))
        nll, count = sequence_nll(outputs.logits, forget["labels"])
        forget_nll = nll.sum() / count.sum().clamp(min=1)
        loss = self.settings.forget_weight * self.forget_term(model, forget, nll, forget_nll)
        self._parts["forget_loss"].append(float(forget_nll.detach()))
        retain = self.retain_term(model, inputs)
        if retain is not None:
            loss = loss + retain
        return (loss, outputs) if return_outputs else loss

    def forget_term(self, model: Any, forget: dict[str, Any], nll: Any, forget_nll: Any) -> Any:
        """The forget set's term: its NLL per token, negated (ascent). ``nll``: summed per sequence."""
        return -forget_nll

    def retain_term(self, model: Any, inputs: dict[str, Any]) -> Optional[Any]:
        """The retain set's weighted term, or None: gradient ascent has none."""
        return None


class GradDiff(GradAscent):
    """Gradient difference: ``-w_f * NLL_forget + w_r * NLL_retain``."""

    name = "grad_diff"
    uses_retain = True

    def retain_term(self, model: Any, inputs: dict[str, Any]) -> Optional[Any]:
        """``retain_weight`` x the retain examples' NLL per token (None when the weight is 0)."""
        if self.settings.retain_weight <= 0:
            return None
        retain = {k[len(RETAIN):]: v for k, v in inputs.items() if k.startswith(RETAIN)}
        r_nll, r_count = sequence_nll(model(**model_inputs(retain)).logits, retain["labels"])
        retain_nll = r_nll.sum() / r_count.sum().clamp(min=1)
        self._parts["retain_loss"].append(float(retain_nll.detach()))
        return self.settings.retain_weight * retain_nll


class NPO(GradDiff):
    """Negative preference optimisation against the model before unlearning, plus the retain NLL:
    ``w_f * (2/beta) * mean(-log sigmoid(-beta * (log p(y|x) - log p_ref(y|x)))) + w_r * NLL_retain``."""

    name = "npo"

    def __init__(self, *args: Any, reference: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reference = reference

    @classmethod
    def extra_inputs(cls, model: Any) -> dict[str, Any]:
        """Full fine-tuning: the starting weights, frozen, are the reference (twice the memory).
        With an adapter the reference is the base with the adapter switched off (no copy)."""
        if hasattr(model, "disable_adapter"):
            return {}
        return {"reference": copy.deepcopy(model).eval().requires_grad_(False)}

    def forget_term(self, model: Any, forget: dict[str, Any], nll: Any, forget_nll: Any) -> Any:
        """The preference loss of each forget answer against the reference."""
        beta = self.settings.beta
        log_ratio = self._reference_nll(model, forget) - nll  # log p(y|x) - log p_ref(y|x)
        term = -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()
        self._parts["npo_loss"].append(float(term.detach()))
        return term

    def _reference_nll(self, model: Any, forget: dict[str, Any]) -> Any:
        """Summed NLL of each forget answer under the model before unlearning (no gradients)."""
        inputs = model_inputs(forget)
        with torch.no_grad():
            if self.reference is not None:
                logits = self.reference(**inputs).logits
            else:
                unwrapped = self.accelerator.unwrap_model(model)
                with unwrapped.disable_adapter():
                    logits = unwrapped(**inputs).logits
        return sequence_nll(logits, forget["labels"])[0]
