"""Pictures of a run: loss and learning-rate curves, and the reward curves of a grpo run, as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Extra training curves drawn next to the loss when a trainer logs them (unlearning trainers).
PART_CURVES = (("forget_loss", "forget NLL"), ("retain_loss", "retain NLL"))


def _pyplot() -> Any:
    """matplotlib's pyplot drawing to files only (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    _pyplot().close(fig)
    return out


def _series(records: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in records if key in r and r[key] is not None]


def plot_curves(records: list[dict[str, Any]], out: Path) -> Path | None:
    """Training loss (with eval loss, and forget / retain NLL when logged) and learning rate against
    the optimizer step, from ``metrics.jsonl`` records; None when no training loss was logged."""
    train = _series(records, "loss")
    if not train:
        return None
    plt = _pyplot()
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
    return _save(fig, out)


def reward_keys(records: list[dict[str, Any]]) -> list[str]:
    """The reward series a grpo run logged: ``reward`` and one ``reward/<name>`` per reward function."""
    keys = {k for r in records for k in r}
    return sorted(k for k in keys if k == "reward" or k.startswith("reward/"))


def plot_reward_curves(records: list[dict[str, Any]], out: Path) -> Path | None:
    """Mean reward (and each reward function's), KL to the starting model and completion length against
    the optimizer step, from ``metrics.jsonl`` records; None when no reward was logged (not a grpo run)."""
    rewards = reward_keys(records)
    if not rewards:
        return None
    plt = _pyplot()
    fig, (ax_reward, ax_kl, ax_length) = plt.subplots(1, 3, figsize=(14, 3.6))
    for key in rewards:
        ax_reward.plot(*zip(*_series(records, key)), "-" if key == "reward" else "--", label=key)
    evals = _series(records, "eval_reward")
    if evals:
        ax_reward.plot(*zip(*evals), "o-", label="eval reward (greedy)")
    ax_reward.set_ylabel("mean reward")
    ax_reward.legend()
    kl = _series(records, "kl")
    if kl:
        ax_kl.plot(*zip(*kl), color="tab:red")
    ax_kl.set_ylabel("KL to the starting model (nats per token)")
    length = _series(records, "completion_length")
    if length:
        ax_length.plot(*zip(*length), color="tab:green")
    ax_length.set_ylabel("completion length (tokens)")
    for ax in (ax_reward, ax_kl, ax_length):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return _save(fig, out)
