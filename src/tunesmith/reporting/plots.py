"""Pictures of a run: loss and learning-rate curves as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Extra training curves drawn next to the loss when a trainer logs them (unlearning trainers).
PART_CURVES = (("forget_loss", "forget NLL"), ("retain_loss", "retain NLL"))


def _series(records: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in records if key in r and r[key] is not None]


def plot_curves(records: list[dict[str, Any]], out: Path) -> Path | None:
    """Training loss (with eval loss, and forget / retain NLL when logged) and learning rate against
    the optimizer step, from ``metrics.jsonl`` records; None when no training loss was logged."""
    train = _series(records, "loss")
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    evals = _series(records, "eval_loss")
    lrs = _series(records, "learning_rate")
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(*zip(*train), label="train loss")
    if evals:
        ax_loss.plot(*zip(*evals), "o-", label="eval loss")
    for key, label in PART_CURVES:
        part = _series(records, key)
        if part:
            ax_loss.plot(*zip(*part), "--", label=label)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss (nats per token)")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    if lrs:
        ax_lr.plot(*zip(*lrs), color="tab:orange")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
