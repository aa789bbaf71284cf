"""The subcommands behind ``tunesmith``: each turns parsed arguments into API calls and prints."""

from __future__ import annotations

import argparse
from pathlib import Path

from tunesmith.errors import ConfigError


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
    print_summary(tuner.train(), tuner.config.eval.show_samples)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
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
    print(f"\nPadding waste at the configured batch size: none {pad['none']:.1%}, "
          f"group_by_length {pad['group_by_length']:.1%}, pack {pad['pack']:.1%} "
          f"(data.packing={report['packing']})")
    if report.get("png"):
        print(f"Histogram saved to {report['png']}")
    legend = "green = trained, dim = masked" if color else "[[...]] = trained, the rest is masked"
    for i, text in enumerate(report["examples"]):
        print(f"\n--- example {i} ({legend}) ---\n{text}")
    return 0


def _settings(args: argparse.Namespace):
    from tunesmith.models.generation import GenerationSettings

    return GenerationSettings(args.max_new_tokens, args.sample, args.temperature, args.top_p)


def cmd_generate(args: argparse.Namespace) -> int:
    from tunesmith.inference.generate import generate
    from tunesmith.inference.runs import load_run

    run = load_run(args.run_dir, args.device)
    (text,) = generate(run.model, run.tokenizer, [args.prompt], _settings(args), run.config.data.system_prompt)
    print(text)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from tunesmith.data.examples import Message
    from tunesmith.inference.generate import chat_reply
    from tunesmith.inference.runs import load_run

    run = load_run(args.run_dir, args.device)
    settings = _settings(args)
    system = run.config.data.system_prompt
    history: list[Message] = [Message("system", system)] if system else []
    print("Chatting with", args.run_dir, "- /reset clears the history, /exit or Ctrl-D quits.")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if line in ("/exit", "/quit"):
            return 0
        if line == "/reset":
            history = history[:1] if system else []
            continue
        if not line:
            continue
        history.append(Message("user", line))
        print("model> ", end="", flush=True)
        reply = ""
        for piece in chat_reply(run.model, run.tokenizer, history, settings):
            reply += piece
            print(piece, end="", flush=True)
        print()
        history.append(Message("assistant", reply.strip()))


def cmd_eval(args: argparse.Namespace) -> int:
    import contextlib
    import json

    import torch

    from tunesmith.cli.printing import print_result
    from tunesmith.config import load_config
    from tunesmith.data.pipeline import load_eval_conversations
    from tunesmith.evaluation.exact_match import evaluate_exact_match
    from tunesmith.inference.runs import load_run
    from tunesmith.models.generation import GenerationSettings
    from tunesmith.models.loading import load_model, load_tokenizer
    from tunesmith.models.precision import resolve_device, resolve_precision

    if args.base:
        cfg = load_config(overrides=[f"model.name_or_path={args.base}"])
        device = resolve_device(cfg.model.device)
        from tunesmith.models.loading import infer_task, load_model_config

        task = infer_task(load_model_config(args.base), cfg.model.task)
        model, tokenizer = load_model(args.base, task, device=device), load_tokenizer(args.base)
        label = args.base
    else:
        run = load_run(args.run_dir)
        cfg, model, tokenizer, label = run.config, run.model, run.tokenizer, args.run_dir
        device = resolve_device(cfg.model.device)
    if args.data:
        cfg.data.train, cfg.data.eval = args.data, None
    if args.samples is not None:
        if args.samples <= 0:
            raise ConfigError(f"--samples: {args.samples} is not allowed; expected a positive count")
        cfg.eval.max_samples = args.samples
    if _is_classifier(model):
        return _eval_classifier(args, cfg, model, tokenizer, device, label)
    conversations = load_eval_conversations(cfg.data, cfg.train.seed, cfg.eval.max_samples)
    if not conversations:
        raise ConfigError("eval: the dataset has no held-out examples; set data.eval or data.eval_split")
    precision = resolve_precision(cfg.train.precision, device)
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    with autocast:
        result = evaluate_exact_match(model, tokenizer, conversations,
                                      GenerationSettings(max_new_tokens=cfg.eval.max_new_tokens),
                                      cfg.eval.batch_size, "Evaluating")
    print_result(label, result.to_dict())
    if not args.base:
        out = Path(args.run_dir) / "eval_exact_match.json"
        out.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
        print(f"Saved {out}")
    return 0


def _is_classifier(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # through a peft wrapper
    return type(base).__name__.endswith("ForSequenceClassification")


def _eval_classifier(args, cfg, model, tokenizer, device: str, label: str) -> int:
    """Accuracy, macro F1, MCC and the confusion matrix on the run's held-out set."""
    import json

    from tunesmith.data.collators import build_collator
    from tunesmith.data.pipeline import build_datasets
    from tunesmith.evaluation.classification import evaluate_classification, format_confusion_matrix

    bundle = build_datasets(cfg.data, tokenizer, cfg.train.seed, "sequence_classification")
    if bundle.eval is None:
        raise ConfigError("eval: the dataset has no held-out examples; set data.eval or data.eval_split")
    dataset = bundle.eval.select(range(min(len(bundle.eval), args.samples))) if args.samples else bundle.eval
    collator = build_collator("auto", "sequence_classification", tokenizer, "none", device)
    metrics = evaluate_classification(model, dataset, collator, cfg.eval.batch_size, bundle.label_names or None,
                                      device)
    print(f"{label}: accuracy {metrics['accuracy']:.1%} ({metrics['correct']}/{metrics['total']}), "
          f"macro F1 {metrics['macro_f1']:.3f}, MCC {metrics['mcc']:.3f}")
    print(format_confusion_matrix(metrics))
    if not args.base:
        out = Path(args.run_dir) / "eval_classification.json"
        out.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        print(f"Saved {out}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    import json

    from tunesmith.models.merge import MERGE_RECORD_FILE, merge_run

    out = merge_run(args.run_dir, args.out_dir, args.dtype, args.overwrite)
    record = json.loads((out / MERGE_RECORD_FILE).read_text(encoding="utf-8"))
    print(f"Merged model ({record['dtype']}) saved to {out}; it loads with transformers alone: "
          f'{record["transformers_class"]}.from_pretrained("{out}")')
    return 0
