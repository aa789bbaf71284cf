"""``tunesmith`` command line: parsing and printing only; the work happens in ``tunesmith.api``."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from tunesmith.cli.eval_commands import add_parsers as add_eval_parsers
from tunesmith.cli.inference_commands import add_parsers as add_inference_parsers


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand (``tunesmith --help`` lists them)."""
    parser = argparse.ArgumentParser(prog="tunesmith", description="Fine-tune pretrained transformer models.")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="also show details (the resolved plan, cache keys); may follow the command")
    loudness.add_argument("-q", "--quiet", action="store_true",
                          help="show warnings and errors only, no progress lines; may follow the command")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train", help="fine-tune a model (default: LoRA on SmolLM2-135M with arith)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune a model. Config precedence: packaged defaults < CONFIG.yaml < key=value.\n\n"
                    "The default job (also what TrainConfig() holds in Python): 150 optimizer steps\n"
                    "(train.max_steps=150) at train.lr=1e-3, batch 8, a few minutes on a laptop CPU.\n"
                    "Giving epochs (train.epochs=3) clears that step limit; giving both, max_steps is\n"
                    "used and a warning says so. train=classify: 3 epochs, batch 32; train=quick: 5 steps.")
    train.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                       help="an optional YAML config file, then overrides such as train.lr=1e-4 model=minilm-l6")
    train.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty output_dir")
    train.add_argument("--force", action="store_true",
                       help="resume even though the config changed the data, model, seed or batch size")
    train.add_argument("--allow-outside-paths", action="store_true",
                       help="let a config file from another folder name dataset/output paths outside it")
    train.add_argument("--dry-run", action="store_true",
                       help="print what the run will do (task, trainer, device, precision, packing, collator) and stop; "
                            "reads the model's config only, no weights or data")

    data = sub.add_parser("data", help="data tools: `tunesmith data inspect` shows what the model trains on")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    inspect = data_sub.add_parser("inspect", help="rows kept and dropped, token lengths, padding waste, marked examples")
    inspect.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value ...]")
    inspect.add_argument("-n", "--examples", type=int, default=3, help="examples to show (default 3)")
    inspect.add_argument("--png", default=None, help="write the token-length histogram to this PNG file")
    inspect.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                         help="colour trained tokens (auto: when writing to a terminal); otherwise [[brackets]]")

    add_inference_parsers(sub)  # generate, chat, predict, serve
    add_eval_parsers(sub)  # eval, report

    merge = sub.add_parser("merge", help="merge a run's adapter into its base: a folder plain transformers loads",
                           description="Merge a finished run (base + adapter, or full weights) into a standalone "
                                       "model folder: safetensors, config.json, tokenizer and chat template.")
    merge.add_argument("run_dir", help="a finished run directory")
    merge.add_argument("out_dir", help="where the model folder goes (must be empty unless --overwrite)")
    merge.add_argument("--dtype", default="auto",
                       help="auto | float32 | bfloat16 | float16 (auto: the base model's stored dtype)")
    merge.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    return parser


_LOUDNESS = {"-v": "verbose", "--verbose": "verbose", "-q": "quiet", "--quiet": "quiet"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``tunesmith ARGV``; returns the exit code: 0, 2 for a user error (one line naming the key,
    file or field), 1 for an internal error (its traceback goes to a log file), 130 / 143 on a signal.

    ``-v`` / ``--verbose`` and ``-q`` / ``--quiet`` (before or after the command) set what the
    ``tunesmith`` logger shows while the command runs; errors are always shown."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    for flag in [e for e in extra if e in _LOUDNESS]:  # `tunesmith train -q ...`: after the command
        setattr(args, _LOUDNESS[flag], True)
        extra.remove(flag)
    if args.verbose and args.quiet:
        parser.error("argument -q/--quiet: not allowed with argument -v/--verbose")
    if extra:
        # key=value overrides after an option (`tunesmith eval RUN --metric rouge_l eval.max_new_tokens=64`)
        # belong to the command's own key=value list; anything else is a mistake.
        if isinstance(getattr(args, "args", None), list) and all("=" in e and not e.startswith("-") for e in extra):
            args.args += extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from tunesmith.cli.masked_console import masked_console
    from tunesmith.config.logs import verbosity

    level = "debug" if args.verbose else "warning" if args.quiet else "info"
    with masked_console(), verbosity(level):  # what a command prints never shows a secret
        try:
            from tunesmith.cli import commands

            return getattr(commands, f"cmd_{args.command}")(args)
        except (Exception, KeyboardInterrupt) as err:  # the one error boundary of every command
            from tunesmith.cli.error_boundary import report_error

            return report_error(err, list(sys.argv[1:] if argv is None else argv))

if __name__ == "__main__":
    sys.exit(main())
