"""``tunesmith eval`` and ``tunesmith report``: held-out metrics of a run or a base model, and the HTML report.

Parsing and printing only: the work happens in ``FineTuner.evaluate`` and
``tunesmith.reporting.report``. Nothing heavy is imported at module level (``--help`` stays fast).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tunesmith.errors import ConfigError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``eval`` and ``report`` on the ``tunesmith`` sub-command parser."""
    ev = sub.add_parser(
        "eval", help="held-out metrics of a run or a base model: exact match, ROUGE-L, accuracy/F1, perplexity",
        description="Score a finished run (or, with --base, a model without fine-tuning) on a held-out set. "
                    "The metric is eval.metric (auto: accuracy, macro F1, MCC and the confusion matrix for "
                    "classifiers; the dataset's own metric for built-in data; ROUGE-L for source/target data; "
                    "exact match for data with reference answers; perplexity otherwise). Results are saved "
                    "as RUN_DIR/eval_<metric>.json.")
    ev.add_argument("args", nargs="*", metavar="[RUN_DIR] [key=value ...]",
                    help="a finished run directory, then config overrides such as eval.metric=rouge_l "
                         "data.eval=held_out.jsonl eval.do_sample=true")
    ev.add_argument("--base", metavar="MODEL", help="evaluate a model without fine-tuning (alias, hub id or folder)")
    ev.add_argument("--samples", type=int, default=None, help="number of held-out examples (default: eval.max_samples "
                                                               "for generation, all for the others)")
    ev.add_argument("--data", default=None, help="dataset to evaluate on (data.eval): a built-in name (its test "
                                                 "split) or a file (all of it)")
    ev.add_argument("--metric", default=None, help="eval.metric: exact_match, rouge_l, accuracy, perplexity, a "
                                                   "registered metric or package.module:function")
    ev.add_argument("--out", default=None, help="write the results JSON here (default: RUN_DIR/eval_<metric>.json; "
                                                "with --base only when given)")

    report = sub.add_parser("report", help="write a run's one-file HTML report (config, data, curves, before/after)",
                            description="Write a self-contained HTML report of a finished run: config, data "
                                        "statistics, loss / learning-rate / eval curves, throughput and memory, "
                                        "before/after metrics and sample generations side by side. Inline CSS "
                                        "and images; it opens offline.")
    report.add_argument("run_dir", help="a finished run directory")
    report.add_argument("--out", default=None, help="where to write it (default: RUN_DIR/report.html)")


def cmd_eval(args: argparse.Namespace) -> int:
    """``tunesmith eval [RUN_DIR] [key=value ...] [--base MODEL]``: score, print and save held-out metrics."""
    from tunesmith.api import FineTuner
    from tunesmith.cli.printing import print_result
    from tunesmith.config.compose import parse_overrides

    items = list(args.args)
    if args.samples is not None and args.samples <= 0:
        raise ConfigError(f"--samples: {args.samples} is not allowed; expected a positive count")
    if args.base:
        bad = [i for i in items if "=" not in i]
        if bad:
            raise ConfigError(f"eval: {bad[0]!r}: with --base give only key=value overrides, not a run directory")
        run_dir, overrides = None, items
        tuner = FineTuner.from_yaml(None, [f"model.name_or_path={args.base}", *overrides])
        label = args.base
    else:
        if not items or "=" in items[0]:
            raise ConfigError("eval: give a RUN_DIR (a finished run) or --base MODEL")
        run_dir, overrides = Path(items[0]), items[1:]
        tuner = FineTuner.load(run_dir)
        if overrides:
            tuner.config.update_config(dict(parse_overrides(overrides)))
        label = str(run_dir)
    updates = {}
    if args.data:
        updates["data.eval"] = args.data
    if args.metric:
        updates["eval.metric"] = args.metric
    if updates:
        tuner.config.update_config(updates)
    result = tuner.evaluate(max_samples=args.samples)
    result = {"model": label, "data": tuner.config.data.eval or tuner.config.data.train, **result}
    print_result(label, result)
    if "confusion_matrix" in result:
        from tunesmith.evaluation.classification import format_confusion_matrix

        print(format_confusion_matrix(result))
    out = Path(args.out) if args.out else (run_dir / f"eval_{_file_part(result['metric'])}.json" if run_dir else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2), encoding="utf-8")
        print(f"Saved {out}")
    return 0


def _file_part(metric: str) -> str:
    """A metric name usable in a file name (``mypkg.metrics:contains`` -> ``contains``)."""
    return metric.rsplit(":", 1)[-1].replace("/", "_")


def cmd_report(args: argparse.Namespace) -> int:
    """``tunesmith report RUN_DIR [--out FILE]``: write the run's self-contained HTML report."""
    from tunesmith.config.run_dir import RunDir
    from tunesmith.config.run_folders import existing_folder
    from tunesmith.errors import RunDirError
    from tunesmith.reporting.report import write_report

    run_dir = existing_folder(args.run_dir)
    if not RunDir(run_dir).is_finished():
        raise RunDirError(f"{run_dir}: not a finished run directory (no {RunDir.RECORD}); nothing to report")
    print(f"Report written to {write_report(run_dir, Path(args.out) if args.out else None)}")
    return 0
