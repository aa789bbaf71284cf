"""Training speed and memory: tunesmith against the plain Hugging Face recipe, side by side.

Both train SmolLM2-135M-Instruct with LoRA (r=16, alpha=32, every linear layer) on the same
conversations for one epoch: a length mix built from the built-in datasets (one arith problem,
one instruct-mini task, or a multi-turn chat of 2-9 of them; roughly 40 to 510 tokens, median
about 95), with the same learning rate, schedule, seed and batch size. The baseline is
``bench/baseline_hf.py``; tunesmith runs through its Python API, with its defaults and again
with ``train.precision=fp32`` (other settings with ``--variant``). Runs alternate (baseline,
tunesmith, tunesmith-fp32, baseline, ...), each in a fresh process, and this machine's matmul peak
(bf16 and fp32) is measured in the same run.

Printed for each run: trained tokens/s (label-bearing targets), total tokens/s (non-pad), peak
memory of the training (RSS on the CPU, allocated CUDA memory on a GPU), padding fraction, the
final loss (mean cross-entropy per trained token on 64 held-out conversations, computed in fp32
by the same code for both) and model FLOPs utilisation against the bf16 matmul peak; then the
median of each and the ratios to the baseline from the same repetition.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_speed.py                       # 24 steps x 8, 2 repeats
    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_speed.py --steps 40 --repeats 3 --device cuda
    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_speed.py --variant packed:data.packing=pack
    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_speed.py --device cuda --model .gpu/models/smollm2-1.7b

On a GPU machine without the packaged model, ``bench/gpu/run.sh`` builds model folders of
SmolLM2's shapes with random weights and runs this script for each (see bench/gpu/README.md).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MODEL = "smollm2-135m-instruct"
EVAL_CONVERSATIONS = 64
# tunesmith's defaults, and the same in fp32 (the baseline's precision on a CPU: it isolates what
# bf16 autocast does to the loss from what everything else does to the speed).
DEFAULT_VARIANTS = ["tunesmith", "tunesmith-fp32:train.precision=fp32"]


# --- the conversations ----------------------------------------------------------------------------


def _arith_turns(row: dict[str, Any]) -> list[dict[str, str]]:
    return [m for m in row["messages"] if m["role"] != "system"]


def _instruct_turns(row: dict[str, Any]) -> list[dict[str, str]]:
    user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]


def make_conversations(n: int, seed: int, tokenizer: Any, max_length: int) -> list[list[dict[str, str]]]:
    """``n`` conversations: 45% one arith problem (with its system prompt), 25% one instruct-mini
    task, 30% a chat of 2-9 of either, cut to the turns that fit in ``max_length`` tokens."""
    from baseline_hf import tokenize_chat

    from tunesmith.data.builtin import BUILTIN_DATASETS

    for module in ("arith", "instruct_mini"):  # importing a built-in dataset's module registers it
        importlib.import_module(f"tunesmith.data.builtin.{module}")

    arith, instruct = BUILTIN_DATASETS.get("arith"), BUILTIN_DATASETS.get("instruct-mini")
    pool_size = 6 * n + 50
    arith_rows = arith.build("train", seed, pool_size)
    instruct_rows = instruct.build("train", seed, pool_size)
    rng = random.Random(seed)
    system = [{"role": "system", "content": arith.system_prompt}]
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.45:
            out.append(system + _arith_turns(arith_rows.pop()))
            continue
        if kind < 0.70:
            out.append(_instruct_turns(instruct_rows.pop()))
            continue
        chat = list(system)
        for _ in range(rng.randint(2, 9)):
            turn = _arith_turns(arith_rows.pop()) if rng.random() < 0.6 else _instruct_turns(instruct_rows.pop())
            if len(tokenize_chat(tokenizer, chat + turn)["input_ids"]) > max_length:
                break
            chat += turn
        out.append(chat)
    return out


def write_jsonl(path: Path, conversations: list[list[dict[str, str]]]) -> None:
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations), encoding="utf-8")


# --- one run, in a child process ------------------------------------------------------------------


def run_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    from baseline_hf import RecipeSettings, build_trainer, read_rows, tokenize_chat
    from speed_probe import instrument

    from tunesmith.models.loading import resolve_model_path

    settings = RecipeSettings(batch_size=spec["batch_size"], lr=spec["lr"], seed=spec["seed"],
                              max_length=spec["max_length"])
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        trainer = build_trainer(resolve_model_path(spec["model"]), read_rows(spec["train"]), settings, spec["device"], tmp)
        request = profile_request(spec, "baseline")
        probe = instrument(trainer, request)
        output = trainer.train()
        return _finish(spec, trainer.model, trainer.processing_class, probe, output, tokenize_chat, request,
                       precision="bf16" if spec["device"].startswith("cuda") else "fp32")


def run_tunesmith(spec: dict[str, Any]) -> dict[str, Any]:
    from baseline_hf import tokenize_chat
    from speed_probe import instrument

    import tunesmith.api.train_job as train_job
    from tunesmith.api import FineTuner
    from tunesmith.config import load_config

    probes = []
    build = train_job._build_trainer
    request = profile_request(spec, spec["variant"])

    def build_instrumented(*args: Any, **kwargs: Any) -> Any:
        trainer = build(*args, **kwargs)
        probes.append(instrument(trainer, request))
        return trainer

    train_job._build_trainer = build_instrumented
    with tempfile.TemporaryDirectory(prefix="bench-tunesmith-") as tmp:
        cfg = load_config(overrides=[
            f"model.name_or_path={spec['model']}", f"data.train={spec['train']}", "data.format=messages",
            f"data.max_length={spec['max_length']}", "data.cache=false", f"output_dir={tmp}/run",
            "eval.before_after=off", "train.max_steps=-1", "train.epochs=1",
            f"train.batch_size={spec['batch_size']}", f"train.lr={spec['lr']}", f"train.seed={spec['seed']}",
            f"model.device={spec['device']}", *spec["overrides"]])
        tuner = FineTuner(cfg)
        result = tuner.train()
        run = json.loads((result.run_dir / "run.json").read_text())

        class Output:
            training_loss = result.train_loss

        return _finish(spec, tuner.model, tuner.tokenizer, probes[0], Output, tokenize_chat, request,
                       precision=run.get("precision", "?"))


def profile_request(spec: dict[str, Any], name: str) -> Any:
    """With ``--profile DIR`` (``--host-reads DIR``): profile (count the host reads of) the warm-up
    steps after the first two, outside the timed ones."""
    from speed_probe import HostReadRequest, ProfileRequest

    if spec.get("profile"):
        return ProfileRequest(Path(spec["profile"]), name, start=2, steps=min(3, spec["warmup"] - 2))
    if spec.get("host_reads"):
        return HostReadRequest(Path(spec["host_reads"]), name, start=2, steps=min(3, spec["warmup"] - 2))
    return None


def _finish(spec: dict[str, Any], model: Any, tokenizer: Any, probe: Any, output: Any, tokenize: Any,
            request: Any, precision: str) -> dict[str, Any]:
    from baseline_hf import read_rows
    from speed_probe import eval_loss, peak_memory

    kind, peak = peak_memory(probe.cuda)  # read before evaluating, which is no part of training
    summary = probe.summary(spec["warmup"])
    summary.update({"memory_kind": kind, "peak_mib": peak, "precision": precision,
                    "train_loss": output.training_loss,
                    "final_loss": eval_loss(model, tokenizer, read_rows(spec["eval"]), tokenize)})
    if getattr(request, "per_step", None) is not None:
        summary["host_reads_per_step"] = request.per_step
    return summary


# --- the parent: data, alternating runs, the table ------------------------------------------------


def child_main(variant: str, spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    result = run_baseline(spec) if variant == "baseline" else run_tunesmith(spec)
    Path(out_path).write_text(json.dumps(result))
    return 0


def run_child(variant: str, spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    spec_path, out_path = tmp / f"spec-{variant}.json", tmp / f"result-{variant}.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant, str(spec_path), str(out_path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if variant == "baseline":
        # Recent transformers fetch hub kernels at the first model.train() on a GPU, which fails
        # offline; the plain recipe needs this variable to train at all (tunesmith decides by itself).
        env.setdefault("USE_HUB_KERNELS", "NO")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=spec["timeout"])
    except subprocess.TimeoutExpired as err:
        raise SystemExit(f"{variant} run did not finish within {spec['timeout']} s:\n{str(err.stderr)[-3000:]}")
    if proc.returncode != 0 or not out_path.exists():
        raise SystemExit(f"{variant} run failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return json.loads(out_path.read_text())


def parse_variants(values: list[str]) -> dict[str, list[str]]:
    """``["tunesmith", "packed:data.packing=pack,train.logits=full"]`` -> name -> config overrides."""
    out: dict[str, list[str]] = {}
    for value in values or DEFAULT_VARIANTS:
        name, _, overrides = value.partition(":")
        out[name] = [o for o in overrides.split(",") if o]
    return out


def _row(name: str, r: dict[str, Any], peak_bf16: float) -> str:
    mem = f"{r['peak_mib']:,.0f} {'RSS' if r['memory_kind'] == 'rss' else 'CUDA'}"
    return (f"{name:<18} {r['precision']:>5} {r['trained_tok_s']:>9.1f} {r['total_tok_s']:>9.1f} {mem:>12} "
            f"{r['padding']:>7.1%} {r['final_loss']:>8.4f} {r['train_loss']:>8.4f} {r['flops_s'] / peak_bf16:>7.1%} "
            f"{r['seconds']:>7.1f}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(*argv[1:4])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24, help="optimizer steps per run (default 24)")
    parser.add_argument("--batch-size", type=int, default=8, help="conversations per step (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="baseline/tunesmith pairs (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--model", default=MODEL, help=f"packaged alias or model folder (default {MODEL})")
    parser.add_argument("--timeout", type=float, default=None, help="seconds one run may take (default: no limit)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--variant", action="append", metavar="NAME[:KEY=VALUE,...]",
                        help="a tunesmith run with config overrides (repeatable; default: 'tunesmith', the "
                             "defaults, and 'tunesmith-fp32', train.precision=fp32)")
    parser.add_argument("--no-baseline", action="store_true", help="only the tunesmith variants")
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="profile warm-up steps 3 to 5 of every run with torch.profiler (those the warm-up "
                             "holds, outside the timed steps; needs --warmup 3 or more) and write DIR/<run>-ops.txt (operators by their own "
                             "GPU or CPU time, with call counts) and DIR/<run>-trace.json (Chrome/Perfetto trace)")
    parser.add_argument("--host-reads", type=Path, metavar="DIR",
                        help="count the reads from the device (each a wait for the GPU) of warm-up steps 3 to 5 of "
                             "every run, by the line that asked, into DIR/<run>-host-reads.txt (needs --warmup 3 "
                             "or more; not with --profile, whose times the counting would slow)")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error("--steps must be larger than --warmup")
    for option, given in (("--profile", args.profile), ("--host-reads", args.host_reads)):
        if given and args.warmup < 3:
            parser.error(f"{option} records warm-up steps 3 to 5, outside the timed steps: use --warmup 3 or more")
    if args.profile and args.host_reads:
        parser.error("--host-reads and --profile both record warm-up steps 3 to 5: use one of them per run")

    from speed_probe import matmul_peak

    from tunesmith.models.loading import load_tokenizer

    tokenizer = load_tokenizer(args.model)  # converts the packaged GGUF once, outside every timed run
    variants = {"baseline": []} if not args.no_baseline else {}
    variants.update(parse_variants(args.variant))
    with tempfile.TemporaryDirectory(prefix="train-speed-") as tmp_name:
        tmp = Path(tmp_name)
        train = make_conversations(args.steps * args.batch_size, args.seed, tokenizer, args.max_length)
        held_out = make_conversations(EVAL_CONVERSATIONS, args.seed + 1000, tokenizer, args.max_length)
        write_jsonl(tmp / "train.jsonl", train)
        write_jsonl(tmp / "eval.jsonl", held_out)
        peaks = {name: matmul_peak(args.device, name) for name in ("bf16", "fp32")}
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, device {args.device}")
        print(f"matmul peak (2048^2): bf16 {peaks['bf16'] / 1e9:,.0f} GFLOP/s, fp32 {peaks['fp32'] / 1e9:,.0f} GFLOP/s")
        print(f"model {args.model}; {len(train)} training conversations ({args.steps} steps x {args.batch_size}), "
              f"{len(held_out)} held out; lr {args.lr}, seed {args.seed}, max_length {args.max_length}")
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for rep in range(args.repeats):
            for name, overrides in variants.items():
                spec = {"train": str(tmp / "train.jsonl"), "eval": str(tmp / "eval.jsonl"), "device": args.device,
                        "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                        "max_length": args.max_length, "warmup": args.warmup, "overrides": overrides,
                        "model": args.model, "timeout": args.timeout, "variant": name,
                        "profile": str(args.profile.resolve()) if args.profile else None,
                        "host_reads": str(args.host_reads.resolve()) if args.host_reads else None}
                result = run_child(name, spec, tmp)
                results[name].append(result)
                print(f"  repeat {rep + 1}: {name:<18} {result['trained_tok_s']:8.1f} trained tok/s, "
                      f"{result['seconds']:.1f} s timed", flush=True)
    report(results, peaks)
    if args.json:
        args.json.write_text(json.dumps({"peaks": peaks, "results": results}, indent=1))
    return 0


def report(results: dict[str, list[dict[str, Any]]], peaks: dict[str, float]) -> None:
    header = (f"{'run':<18} {'prec':>5} {'trained/s':>9} {'total/s':>9} {'peak MiB':>12} {'padding':>7} "
              f"{'final':>8} {'train':>8} {'MFU':>7} {'timed s':>7}")
    print("\nevery run (tokens/s after the warm-up steps; final = held-out loss; MFU vs the bf16 peak)")
    print(header)
    for name, runs in results.items():
        for i, r in enumerate(runs):
            print(_row(f"{name} #{i + 1}", r, peaks["bf16"]))
    print("\nmedian over repeats")
    print(header)
    medians = {}
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in
               ("trained_tok_s", "total_tok_s", "peak_mib", "padding", "final_loss", "train_loss", "flops_s", "seconds")}
        med.update({"precision": runs[0]["precision"], "memory_kind": runs[0]["memory_kind"]})
        medians[name] = med
        print(_row(name, med, peaks["bf16"]))
    reads = {name: statistics.median(r["host_reads_per_step"] for r in runs) for name, runs in results.items()
             if all("host_reads_per_step" in r for r in runs)}
    if reads:
        print("\nreads from the device per optimizer step (warm-up steps 3-5; which lines: --host-reads DIR): "
              + ", ".join(f"{name} {n:g}" for name, n in reads.items()))
    if "baseline" not in results:
        return
    base = results["baseline"]
    print("\nratios to the baseline of the same repeat (median; trained tokens/s, peak memory, final loss)")
    for name, runs in results.items():
        if name == "baseline":
            continue
        speed = statistics.median(r["trained_tok_s"] / b["trained_tok_s"] for r, b in zip(runs, base))
        memory = statistics.median(r["peak_mib"] / b["peak_mib"] for r, b in zip(runs, base))
        loss = statistics.median(r["final_loss"] / b["final_loss"] - 1 for r, b in zip(runs, base))
        print(f"  {name:<18} speed {speed:5.2f}x   peak memory {memory:5.2f}x   final loss {loss:+.2%}   "
              f"MFU {medians[name]['flops_s'] / peaks['bf16']:.1%} (baseline "
              f"{medians['baseline']['flops_s'] / peaks['bf16']:.1%} of bf16, "
              f"{medians['baseline']['flops_s'] / peaks['fp32']:.1%} of fp32)")


if __name__ == "__main__":
    sys.exit(main())
