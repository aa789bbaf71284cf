"""The subcommands behind ``tunesmith``: each turns parsed arguments into API calls and prints."""

from __future__ import annotations

import argparse
from pathlib import Path

from tunesmith.cli.eval_commands import cmd_eval, cmd_report
from tunesmith.cli.inference_commands import cmd_chat, cmd_generate, cmd_predict, cmd_serve
from tunesmith.errors import ConfigError

# main() dispatches `tunesmith <command>` to cmd_<command> here; some live in their own modules.
__all__ = ["cmd_chat", "cmd_data", "cmd_eval", "cmd_generate", "cmd_merge", "cmd_predict", "cmd_report",
           "cmd_serve", "cmd_train"]


def _split_train_args(items: list[str]) -> tuple[str | None, list[str]]:
    config_file = None
    overrides = []
    for item in items:
        if "=" not in item and config_file is None and overrides == []:
            if not item.endswith((".yaml", ".yml")):
                raise ConfigError(f"{item!r}: expected a .yaml config file or key=value overrides")
            config_file = item
        else:
            overrides.append(item)
    return config_file, overrides


def cmd_train(args: argparse.Namespace) -> int:
    """``tunesmith train [CONFIG.yaml] [key=value ...]``: train, evaluate and save a run."""
    from tunesmith.api import FineTuner
    from tunesmith.cli.printing import print_summary

    config_file, overrides = _split_train_args(args.args)
    if args.overwrite:
        overrides.append("overwrite=true")
    if getattr(args, "force", False):
        overrides.append("force_resume=true")
    if getattr(args, "allow_outside_paths", False):
        overrides.append("allow_outside_paths=true")
    tuner = FineTuner.from_yaml(config_file, overrides)  # every key is checked before loading
    if getattr(args, "dry_run", False):
        print("\n".join(tuner.plan().describe(tuner.config)))
        return 0
    print_summary(tuner.train(), tuner.config.eval.show_samples)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """``tunesmith data inspect``: what the model will be trained on, without loading it."""
    import sys

    from tunesmith.api import FineTuner

    config_file, overrides = _split_train_args(args.args)
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    if args.examples < 0:
        raise ConfigError(f"--examples: {args.examples} is not allowed; expected 0 or more")
    report = FineTuner.from_yaml(config_file, overrides).inspect_data(
        args.examples, color, Path(args.png) if args.png else None)
    if report["format"]:
        print(report["format"][0].upper() + report["format"][1:])
    print(f"Train: {report['train']}")
    if report["eval"]:
        print(f"Eval: {report['eval']}")
    for note in report["notes"]:
        print(note)
    print("\nTokens per training example:")
    print("\n".join(report["histogram"]))
    pad = report["padding"]
    shown = ", ".join(f"{name} {pad[name]:.1%}" for name in ("none", "group_by_length", "pack", "padding_free")
                      if name in pad)
    print(f"\nPadding waste at the configured batch size: {shown} (data.packing={report['packing']})")
    if report.get("png"):
        print(f"Histogram saved to {report['png']}")
    legend = "green = trained, dim = masked" if color else "[[...]] = trained, the rest is masked"
    for i, text in enumerate(report["examples"]):
        print(f"\n--- example {i} ({legend}) ---\n{text}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """``tunesmith merge RUN_DIR OUT``: fold a LoRA adapter into a standalone model folder."""
    import json

    from tunesmith.api.exports import merge_run
    from tunesmith.models.merge import MERGE_RECORD_FILE

    out = merge_run(args.run_dir, args.out_dir, args.dtype, args.overwrite)
    record = json.loads((out / MERGE_RECORD_FILE).read_text(encoding="utf-8"))
    print(f"Merged model ({record['dtype']}) saved to {out}; it loads with transformers alone: "
          f'{record["transformers_class"]}.from_pretrained("{out}")')
    return 0
