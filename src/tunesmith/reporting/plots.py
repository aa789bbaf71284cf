"""Pictures of a run: loss and learning-rate curves as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_curves(records: list[dict[str, Any]], out: Path) -> Path | None:
    """Training loss (and eval loss when logged) and learning rate against the step."""
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    lrs = [(r["step"], r["learning_rate"]) for r in records if "learning_rate" in r]
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(*zip(*train), label="train loss")
    if evals:
        ax_loss.plot(*zip(*evals), "o-", label="eval loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
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
