"""``tunesmith generate``, ``chat``, ``predict`` and ``serve``: a trained run answering prompts.

Every command loads the run with ``FineTuner.load`` and answers through its inference handler
(``eval.inference_handler``, by default the chat-template handler used in training), so a custom
handler changes all four. Nothing heavy is imported at module level (``--help`` stays fast).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from tunesmith.errors import ConfigError, ModelError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``generate``, ``chat``, ``predict`` and ``serve`` on the sub-command parser."""
    gen = sub.add_parser("generate", help="answer one prompt, or a JSONL file of prompts, with a trained run",
                         description="Answer PROMPT, or every row of --input FILE.jsonl (JSONL out, each row with "
                                     "an 'output' field added).")
    gen.add_argument("run_dir", help="a finished run directory or a model folder")
    gen.add_argument("prompt", nargs="?", default=None, help="the user's prompt (or use --input)")
    gen.add_argument("--input", default=None, help="a JSONL file with one prompt per line")
    gen.add_argument("--output", default=None, help="where the JSONL answers go (default: standard output)")
    gen.add_argument("--field", default="prompt", help="the JSON field holding the prompt (default: prompt)")
    gen.add_argument("--batch-size", type=int, default=16, help="prompts per generation batch (default 16)")
    _generation_flags(gen)

    chat = sub.add_parser("chat", help="talk with a trained run (history is kept; /reset, /exit)")
    chat.add_argument("run_dir")
    _generation_flags(chat)

    predict = sub.add_parser("predict", help="label a text, or a JSONL file of texts, with a trained classifier",
                             description="Classify TEXT (with --pair for sentence-pair classifiers), or every row "
                                         "of --input FILE.jsonl (JSONL out with 'predicted', 'confidence' and "
                                         "'scores' added).")
    predict.add_argument("run_dir", help="a finished classification run")
    predict.add_argument("text", nargs="?", default=None, help="the text to classify (or use --input)")
    predict.add_argument("--pair", default=None, help="the second text of a sentence pair")
    predict.add_argument("--input", default=None, help="a JSONL file with one text per line")
    predict.add_argument("--output", default=None, help="where the JSONL predictions go (default: standard output)")
    predict.add_argument("--field", default="text", help="the JSON field holding the text (default: text)")
    predict.add_argument("--pair-field", default=None, help="the JSON field holding the second text of a pair")
    predict.add_argument("--device", default=None, help="cpu | cuda | ... (default: the run's model.device)")

    serve = sub.add_parser("serve", help="serve a trained run over an OpenAI-compatible HTTP API on localhost",
                           description="Serve POST /v1/chat/completions (with \"stream\": true for server-sent "
                                       "events) and GET /v1/models for one trained run.")
    serve.add_argument("run_dir", help="a finished run directory or a model folder")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--model-name", default=None, help="the model id clients send (default: the folder's name)")
    serve.add_argument("--sample", action="store_true",
                       help="sample when a request sets no temperature (default: greedy decoding)")
    serve.add_argument("--temperature", type=float, default=0.7, help="with --sample (default 0.7)")
    serve.add_argument("--top-p", type=float, default=0.9, help="with --sample (default 0.9)")
    serve.add_argument("--device", default=None, help="cpu | cuda | ... (default: the run's model.device)")


def _generation_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=None, help="seed for --sample (repeatable samples)")
    p.add_argument("--device", default=None, help="cpu | cuda | ... (default: the run's model.device)")


def _settings(args: argparse.Namespace) -> Any:
    from tunesmith.models.generation import GenerationSettings

    checks = [("--max-new-tokens", args.max_new_tokens >= 1, "a positive number of tokens"),
              ("--temperature", 0 < args.temperature < math.inf, "a positive, finite temperature"),
              ("--top-p", 0 < args.top_p <= 1, "a probability in (0, 1]"),
              ("--seed", args.seed is None or 0 <= args.seed <= 2**32 - 1, "an integer from 0 to 2**32-1")]
    for flag, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{flag}: {getattr(args, flag[2:].replace('-', '_'))!r} is not allowed; expected {allowed}")
    if args.seed is not None:
        from transformers import set_seed

        set_seed(args.seed)
    return GenerationSettings(args.max_new_tokens, args.sample, args.temperature, args.top_p)


def _one_or_file(value: Any, file: Any, what: str) -> None:
    if (value is None) == (file is None):
        raise ConfigError(f"give either {what} or --input FILE.jsonl (exactly one)")


def cmd_generate(args: argparse.Namespace) -> int:
    """``tunesmith generate RUN_DIR PROMPT`` or ``--input FILE.jsonl``: answers, printed or as JSONL."""
    from tqdm.auto import tqdm

    from tunesmith.api import FineTuner
    from tunesmith.inference.jsonl_io import read_rows, write_rows

    _one_or_file(args.prompt, args.input, "PROMPT")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: {args.batch_size} is not allowed; expected a positive count")
    rows = read_rows(args.input, args.field) if args.input else None  # a bad file fails before loading
    settings = _settings(args)
    tuner = FineTuner.load(args.run_dir, args.device)
    handler = tuner.inference_handler
    if args.prompt is not None:
        (text,) = handler.generate(tuner.model, tuner.tokenizer, [args.prompt], settings)
        print(text)
        return 0
    outputs: list[str] = []
    with tqdm(total=len(rows), desc="Generating", unit="prompt", file=sys.stderr) as bar:
        for start in range(0, len(rows), args.batch_size):
            chunk = [row[args.field] for row in rows[start:start + args.batch_size]]
            outputs += handler.generate(tuner.model, tuner.tokenizer, chunk, settings)
            bar.update(len(chunk))
    write_rows(({**row, "output": out} for row, out in zip(rows, outputs)), args.output)
    if args.output:
        print(f"Wrote {len(outputs)} answers to {args.output}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """``tunesmith chat RUN_DIR``: a conversation in the terminal, the reply streamed as it is generated."""
    from tunesmith.api import FineTuner
    from tunesmith.data.examples import Message
    from tunesmith.inference.handler import can_chat

    settings = _settings(args)
    tuner = FineTuner.load(args.run_dir, args.device)
    handler = tuner.inference_handler
    if not can_chat(handler):
        raise ConfigError(f"eval.inference_handler: {type(handler).__name__} has no stream_chat(model, tokenizer, "
                          "messages, settings) method, which chat needs")
    history: list[Message] = []  # the handler adds the run's system prompt
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
            history = []
            continue
        if not line:
            continue
        history.append(Message("user", line))
        print("model> ", end="", flush=True)
        reply = ""
        for piece in handler.stream_chat(tuner.model, tuner.tokenizer, history, settings):
            reply += piece
            print(piece, end="", flush=True)
        print()
        history.append(Message("assistant", reply.strip()))


def cmd_predict(args: argparse.Namespace) -> int:
    """``tunesmith predict RUN_DIR TEXT`` or ``--input FILE.jsonl``: a classifier's labels and probabilities."""
    from tunesmith.api import FineTuner
    from tunesmith.inference.jsonl_io import read_rows, write_rows
    from tunesmith.inference.predict import ClassifierInferenceHandler, is_classifier

    _one_or_file(args.text, args.input, "TEXT")
    rows = read_rows(args.input, args.field, args.pair_field) if args.input else None
    tuner = FineTuner.load(args.run_dir, args.device)
    if not is_classifier(tuner.model):
        raise ModelError(f"predict: {args.run_dir} holds a language model, not a classifier; use "
                         f"`tunesmith generate {args.run_dir} PROMPT`")
    handler = tuner.inference_handler
    if not callable(getattr(handler, "predict", None)):
        handler = ClassifierInferenceHandler(max_length=tuner.config.data.max_length)
    if rows is None:
        (result,) = handler.predict(tuner.model, tuner.tokenizer, [args.text], [args.pair] if args.pair else None)
        scores = ", ".join(f"{name} {p:.1%}" for name, p in result["scores"].items())
        print(f"{result['label']} ({result['confidence']:.1%}; {scores})")
        return 0
    pairs = [row[args.pair_field] for row in rows] if args.pair_field else None
    results = handler.predict(tuner.model, tuner.tokenizer, [row[args.field] for row in rows], pairs)
    write_rows(({**row, "predicted": r["label"], "confidence": r["confidence"], "scores": r["scores"]}
                for row, r in zip(rows, results)), args.output)
    if args.output:
        print(f"Wrote {len(results)} predictions to {args.output}")
    return 0


def _check_port_free(host: str, port: int) -> None:
    """``ConfigError`` naming ``--host`` / ``--port`` when the address cannot be listened on."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise ConfigError(f"--host: {host!r} is not an address of this machine ({err.strerror or err})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            raise ConfigError(f"--port: {port} on {host} cannot be used ({err.strerror or err}); choose another "
                              "--port or stop what listens there") from None


def cmd_serve(args: argparse.Namespace) -> int:
    """``tunesmith serve RUN_DIR``: the OpenAI-compatible HTTP endpoint, until interrupted."""
    from pathlib import Path

    from tunesmith.api import FineTuner
    from tunesmith.inference.server import build_app, serve

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port: {args.port} is not allowed; expected 1-65535")
    if not (0 < args.temperature < math.inf and 0 < args.top_p <= 1):
        raise ConfigError(f"--temperature {args.temperature!r} / --top-p {args.top_p!r}: the temperature must be "
                          "positive and finite, --top-p in (0, 1]")
    _check_port_free(args.host, args.port)  # before the model loads, not after
    tuner = FineTuner.load(args.run_dir, args.device)
    name = args.model_name or Path(args.run_dir).resolve().name
    app = build_app(tuner.model, tuner.tokenizer, tuner.inference_handler, name, sample=args.sample,
                    default_temperature=args.temperature, default_top_p=args.top_p)
    print(f"Serving '{name}' at http://{args.host}:{args.port}/v1 (OpenAI-compatible: /v1/chat/completions, "
          "/v1/models); Ctrl-C stops.", flush=True)
    serve(app, args.host, args.port)
    return 0
