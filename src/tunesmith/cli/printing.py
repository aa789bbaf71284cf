"""Console output of results: the before/after table and sample answers."""

from __future__ import annotations

from typing import Any


def print_result(label: str, result: dict[str, Any]) -> None:
    print(f"{label}: exact match {result['accuracy']:.1%} ({result['correct']}/{result['total']})")


def print_before_after(before: dict[str, Any], after: dict[str, Any], show: int = 1) -> None:
    """A small table, then ``show`` held-out questions answered by both models."""
    gain = after["accuracy"] - before["accuracy"]
    print("\nHeld-out exact match (same questions, greedy decoding)")
    print(f"  {'model':<14}{'accuracy':>10}{'correct':>10}")
    print(f"  {'base':<14}{before['accuracy']:>10.1%}{before['correct']:>7}/{before['total']}")
    print(f"  {'fine-tuned':<14}{after['accuracy']:>10.1%}{after['correct']:>7}/{after['total']}")
    print(f"  {'change':<14}{gain:>+10.1%}")
    for b, a in list(zip(before["samples"], after["samples"]))[:show]:
        print(f"\nQuestion: {b['question']}\nReference answer: {b['reference']}")
        print(f"--- base model ({'correct' if b['correct'] else 'wrong'}):\n{b['output']}")
        print(f"--- fine-tuned model ({'correct' if a['correct'] else 'wrong'}):\n{a['output']}")
