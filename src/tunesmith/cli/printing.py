"""Console output of results: the before/after table and sample answers.

The end-of-run summary of ``tunesmith train`` goes through the ``tunesmith`` logger like the run's
own progress lines (``--quiet`` hides it, other processes of a distributed run never show it);
``print_result``, the answer of ``tunesmith eval``, is the command's output and always printed.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def print_result(label: str, result: dict[str, Any]) -> None:
    """``runs/x: exact match 69.0% (69/100)``; classifiers add macro F1 and MCC."""
    from tunesmith.evaluation.metrics import format_score

    line = f"{label}: {format_score(result)}"
    if "macro_f1" in result:
        line += f", macro F1 {result['macro_f1']:.3f}, MCC {result['mcc']:.3f}"
    print(line)


def print_before_after(before: dict[str, Any], after: dict[str, Any], show: int = 1) -> None:
    """A small table, then ``show`` held-out questions answered by both models (or, for a
    classifier, macro F1 and the tuned model's confusion matrix)."""
    from tunesmith.evaluation.metrics import format_value, metric_label

    name = after["metric"]
    label = metric_label(name)
    classifier = "macro_f1" in after
    sampled = after.get("settings", {}).get("do_sample")
    scored_by_loss = name == "perplexity" or name.endswith("_loss")  # teacher-forced, nothing generated
    how = ("same examples" if classifier or scored_by_loss
           else "same questions, sampled" if sampled else "same questions, greedy decoding")
    counted = "correct" in after and "correct" in before
    logger.info(f"\nHeld-out {label} ({how})")
    logger.info(f"  {'model':<14}{label:>12}" + (f"{'correct':>10}" if counted else ""))
    for row, result in (("base", before), ("fine-tuned", after)):
        count = f"{result['correct']:>7}/{result['total']}" if counted else ""
        logger.info(f"  {row:<14}{format_value(name, result['score']):>12}{count}")
    logger.info(f"  {'change':<14}{format_value(name, after['score'] - before['score'], signed=True):>12}")
    if classifier:
        from tunesmith.evaluation.classification import format_confusion_matrix

        logger.info(f"  macro F1 {before['macro_f1']:.3f} -> {after['macro_f1']:.3f}; MCC {before['mcc']:.3f} -> {after['mcc']:.3f}")
        logger.info("\nConfusion matrix of the fine-tuned model:")
        logger.info(format_confusion_matrix(after))
        return
    for b, a in list(zip(before.get("samples", []), after.get("samples", [])))[:show]:
        logger.info(f"\nQuestion: {b['question']}\nReference answer: {b['reference']}")
        logger.info(f"--- base model ({_verdict(b)}):\n{b['output']}")
        logger.info(f"--- fine-tuned model ({_verdict(a)}):\n{a['output']}")


def _verdict(sample: dict[str, Any]) -> str:
    if "correct" in sample:
        return "correct" if sample["correct"] else "wrong"
    return f"score {sample['score']:.3f}" if "score" in sample else "not scored"


def print_summary(result: Any, show_samples: int = 1) -> None:
    """Print the end-of-run summary that ``tunesmith train`` prints (time, loss, before/after, next steps)."""
    from tunesmith.config.run_dir import RunDir

    loss = f"{result.train_loss:.4f}" if result.train_loss is not None else "n/a"
    logger.info(f"\nTraining took {result.train_seconds / 60:.1f} min; final training loss {loss}")
    if result.before and result.after:
        print_before_after(result.before, result.after, show_samples)
    logger.info(f"Saved to {result.run_dir} (adapter, tokenizer, config.yaml, metrics.jsonl, report.html)")
    run = RunDir(result.run_dir)
    if run.has_weights():
        task = run.read_record()["task"]
        if task == "sequence_classification":
            logger.info(f"Score it: tunesmith eval {result.run_dir}")
        else:
            logger.info(f'Try it: tunesmith generate {result.run_dir} "A baker makes 12 rolls and sells 5. How many are left?"')
