"""Console output of results: the before/after table and sample answers."""

from __future__ import annotations

from typing import Any


def print_result(label: str, result: dict[str, Any]) -> None:
    print(f"{label}: exact match {result['accuracy']:.1%} ({result['correct']}/{result['total']})")


def print_before_after(before: dict[str, Any], after: dict[str, Any], show: int = 1) -> None:
    """A small table, then ``show`` held-out questions answered by both models (or, for a
    classifier, macro F1 and the tuned model's confusion matrix)."""
    gain = after["accuracy"] - before["accuracy"]
    classifier = "macro_f1" in after
    title = "accuracy (same examples)" if classifier else "exact match (same questions, greedy decoding)"
    print(f"\nHeld-out {title}")
    print(f"  {'model':<14}{'accuracy':>10}{'correct':>10}")
    print(f"  {'base':<14}{before['accuracy']:>10.1%}{before['correct']:>7}/{before['total']}")
    print(f"  {'fine-tuned':<14}{after['accuracy']:>10.1%}{after['correct']:>7}/{after['total']}")
    print(f"  {'change':<14}{gain:>+10.1%}")
    if classifier:
        from tunesmith.evaluation.classification import format_confusion_matrix

        print(f"  macro F1 {before['macro_f1']:.3f} -> {after['macro_f1']:.3f}; MCC {before['mcc']:.3f} -> {after['mcc']:.3f}")
        print("\nConfusion matrix of the fine-tuned model:")
        print(format_confusion_matrix(after))
        return
    for b, a in list(zip(before["samples"], after["samples"]))[:show]:
        print(f"\nQuestion: {b['question']}\nReference answer: {b['reference']}")
        print(f"--- base model ({'correct' if b['correct'] else 'wrong'}):\n{b['output']}")
        print(f"--- fine-tuned model ({'correct' if a['correct'] else 'wrong'}):\n{a['output']}")


def print_summary(result: Any, show_samples: int = 1) -> None:
    """Print the end-of-run summary that ``tunesmith train`` prints (time, loss, before/after, next steps)."""
    import json

    loss = f"{result.train_loss:.4f}" if result.train_loss is not None else "n/a"
    print(f"\nTraining took {result.train_seconds / 60:.1f} min; final training loss {loss}")
    if result.before and result.after:
        print_before_after(result.before, result.after, show_samples)
    print(f"Saved to {result.run_dir} (adapter, tokenizer, config.yaml, metrics.jsonl, loss_curve.png)")
    if (result.run_dir / "adapter_config.json").is_file() or (result.run_dir / "model.safetensors").is_file():
        task = json.loads((result.run_dir / "run.json").read_text())["task"]
        if task == "sequence_classification":
            print(f"Score it: tunesmith eval {result.run_dir}")
        else:
            print(f'Try it: tunesmith generate {result.run_dir} "A baker makes 12 rolls and sells 5. How many are left?"')
