"""The speed benchmark measures what it claims: the baseline trains the same tokens as tunesmith,
and the probe counts real and trained tokens of padded and padding-free batches alike."""

import sys
import tempfile
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from baseline_hf import tokenize_chat  # noqa: E402
from speed_probe import ModelShape, Probe, example_lengths  # noqa: E402
from train_speed import make_conversations, parse_variants, write_jsonl  # noqa: E402

from tunesmith.data.collators import PackedCollator, PaddingCollator  # noqa: E402
from tunesmith.api.data_entry import build_datasets  # noqa: E402


@pytest.fixture(scope="module")
def conversations(smol_tokenizer):
    return make_conversations(24, 7, smol_tokenizer, 512)


def test_the_mix_has_short_and_long_multi_turn_conversations(conversations, smol_tokenizer):
    lengths = [len(tokenize_chat(smol_tokenizer, c)["input_ids"]) for c in conversations]
    assert max(lengths) <= 512 and min(lengths) < 100 < max(lengths)
    assert any(sum(m["role"] == "assistant" for m in c) > 1 for c in conversations)


def test_baseline_labels_are_tunesmith_labels(conversations, smol_tokenizer, tmp_path):
    write_jsonl(tmp_path / "train.jsonl", conversations)
    bundle = build_datasets({"train": str(tmp_path / "train.jsonl"), "format": "messages", "cache": False},
                            smol_tokenizer)
    ours = {tuple(r["input_ids"]): r["labels"] for r in bundle.train}
    assert len(ours) == len(conversations)
    for conversation in conversations:
        row = tokenize_chat(smol_tokenizer, conversation)
        assert ours[tuple(row["input_ids"])] == row["labels"]


def test_probe_counts_the_same_tokens_padded_and_padding_free(conversations, smol_tokenizer):
    rows = [tokenize_chat(smol_tokenizer, c) for c in conversations[:6]]
    rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    padded = PaddingCollator(pad_token_id=smol_tokenizer.pad_token_id)(rows)
    flat = PackedCollator(pad_token_id=smol_tokenizer.pad_token_id)(rows)
    real = [len(r["input_ids"]) for r in rows]
    assert example_lengths(padded) == real == example_lengths(flat)
    shape = ModelShape(linear_params=100, lora_params=10, head_params=50, layers=2, attn_width=8)
    counts = []
    for batch in (padded, flat):
        probe = Probe(shape, cuda=False)
        probe.count(batch)
        counts.append((probe.steps[0].real, probe.steps[0].trained, probe.steps[0].flops))
    assert counts[0] == counts[1]
    assert counts[0][1] == sum(sum(1 for t in r["labels"][1:] if t != -100) for r in rows)
    assert int(padded["labels"].numel()) > sum(real) == int(flat["labels"].numel())


def test_variants_parse_to_config_overrides():
    assert parse_variants(["fast:data.packing=pack,train.logits=full", "plain"]) == {
        "fast": ["data.packing=pack", "train.logits=full"], "plain": []}
    assert list(parse_variants([])) == ["tunesmith", "tunesmith-fp32"]


def test_memory_bench_variants_and_summary():
    from memory_growth import DEFAULT_VARIANTS, parse, summary

    assert parse("jemalloc:train.memory_trim=off,data.packing=none@LD_PRELOAD=/x.so,MALLOC_ARENA_MAX=2") == (
        "jemalloc", ["train.memory_trim=off", "data.packing=none"], {"LD_PRELOAD": "/x.so", "MALLOC_ARENA_MAX": "2"})
    assert [parse(v)[0] for v in DEFAULT_VARIANTS] == ["padding-free", "padding-free-untuned", "padded", "padded-untuned"]
    record = {"rss": [100.0, 110.0, 121.0], "step_peak": [130.0, 150.0, 140.0], "load_peak": 120.0, "end_peak": 125.0}
    s = summary(record, start=2)
    assert (s["start_step"], s["at_start"], s["end"], s["step_peak"], s["peak"]) == (2, 110.0, 121.0, 150.0, 150.0)
    assert abs(s["growth"] - 0.1) < 1e-9
    assert summary({**record, "load_peak": 900.0}, start=20)["peak"] == 900.0  # loading can be the peak


def test_every_tunesmith_name_a_bench_script_imports_exists():
    """The bench scripts import tunesmith's functions inside their functions; a moved function would
    only show when that part of the benchmark runs."""
    import ast
    import importlib

    missing = []
    for script in sorted(BENCH.rglob("*.py")):
        for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tunesmith")):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{script.name}:{node.lineno}: {node.module}.{alias.name}")
    assert not missing, missing


def test_preprocess_bench_runs_end_to_end_on_a_few_rows():
    import os
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(BENCH / "preprocess.py"), "--rows", "300", "--check", "50",
                           "--tokenizer-alone"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "50 of 50 rows checked are identical" in done.stdout
    assert "the Rust tokenizer alone" in done.stdout


def bench_tiny(model_dir, tmp_path, *options) -> str:
    """Run ``bench/train_speed.py`` on a tiny model (7 steps, 5 of them warm-up; the baseline and
    ``tunesmith``) with ``options``, results in ``tmp_path/r.json``; returns what it printed."""
    import os
    import subprocess

    done = subprocess.run([sys.executable, str(BENCH / "train_speed.py"), "--model", str(model_dir),
                           "--steps", "7", "--warmup", "5", "--batch-size", "2", "--repeats", "1",
                           "--variant", "tunesmith", *map(str, options), "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_the_speed_bench_profiles_warm_up_steps_of_both_sides(tiny_llama_dir, tmp_path):
    """``bench/train_speed.py --profile DIR`` writes, for the baseline and each variant, the operators
    of warm-up steps 3-5 by their own time and a trace, and still times the steps after the warm-up."""
    import json
    import os
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    profile = tmp_path / "profile"
    bench_tiny(tiny_llama_dir, tmp_path, "--profile", profile)
    for name in ("baseline", "tunesmith"):
        ops = (profile / f"{name}-ops.txt").read_text()
        assert ops.startswith(f"{name}: 3 optimizer steps, sorted by self_cpu_time_total")
        assert "aten::mm" in ops or "aten::addmm" in ops
        assert json.loads((profile / f"{name}-trace.json").read_text())["traceEvents"]
        result = json.loads((tmp_path / "r.json").read_text())["results"][name][0]
        assert result["timed_steps"] == 2  # steps 6 and 7: the profiled steps are not timed
    refused = subprocess.run([sys.executable, str(BENCH / "train_speed.py"), "--warmup", "2", "--profile",
                              str(profile)], capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and "--profile records warm-up steps 3 to 5" in refused.stderr


def test_the_gpu_scripts_parse_and_the_wheel_list_names_only_installed_packages(tmp_path):
    """bench/gpu: both scripts are valid bash, and wheels.sh pins what it fetches to the versions of
    the environment it runs in, refusing (before any download) a package that is not installed."""
    import os
    import subprocess

    gpu = BENCH / "gpu"
    for script in ("run.sh", "wheels.sh", "check.sh", "env.sh"):
        assert subprocess.run(["bash", "-n", str(gpu / script)]).returncode == 0
    env = {**os.environ, "PY": sys.executable, "PACKAGES": "peft no-such-package-here"}
    done = subprocess.run(["bash", str(gpu / "wheels.sh"), str(tmp_path / "wheels")], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode != 0
    assert "not installed in this environment, so no version to match: no-such-package-here" in done.stderr
    assert not list((tmp_path / "wheels").glob("*.whl"))


def test_the_speed_bench_counts_reads_from_the_device_and_tunesmith_makes_one_per_step(tiny_llama_dir, tmp_path):
    """``--host-reads DIR``: the census of warm-up steps 3-5 finds the plain recipe's per-micro-batch
    reads (transformers' NaN check of the logged loss) and, for tunesmith, only the NaN guard's one read
    per optimizer step besides the CPU-only attention (one SDPA call per example reads the boundaries)."""
    import json
    import os
    import re
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    folder = tmp_path / "reads"
    assert "reads from the device per optimizer step" in bench_tiny(tiny_llama_dir, tmp_path, "--host-reads", folder)

    def census(name):
        lines = (folder / f"{name}-host-reads.txt").read_text().splitlines()
        assert lines[0].startswith(f"{name}: ") and "in 3 optimizer steps" in lines[0]
        return [(int(n), where) for n, where in (re.match(r"\s*(\d+)\s+\S+\s+(.*)", line).groups() for line in lines[1:])]

    cpu_only = ("segment_attention.py", "find_packed_sequence_indices")
    ours = [(n, where) for n, where in census("tunesmith") if not any(c in where for c in cpu_only)]
    assert len(ours) == 1 and "nan_guard.py" in ours[0][1] and ours[0][0] == 3, ours
    assert any("transformers/trainer.py" in where for _, where in census("baseline"))
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert results["tunesmith"][0]["host_reads_per_step"] < results["baseline"][0]["host_reads_per_step"]
    refused = subprocess.run([sys.executable, str(BENCH / "train_speed.py"), "--warmup", "3", "--profile",
                              str(folder), "--host-reads", str(folder)], capture_output=True, text=True, env=env,
                             timeout=120)
    assert refused.returncode == 2 and "use one of them per run" in refused.stderr


def test_on_a_gpu_the_census_counts_only_reads_of_device_tensors():
    """With ``cuda=True`` an operator counts when it reads a device tensor back: ``.item()``, a
    boolean mask, a copy to the host that waits; not a non-blocking copy, nor work on host tensors.
    Meta tensors stand in for GPU ones (the reads raise after being counted)."""
    import types

    from speed_probe import HostReadRequest

    import torch

    with tempfile.TemporaryDirectory() as folder:
        request = HostReadRequest(Path(folder), "x", start=2, steps=3)
        census = request.callback(cuda=True)
        census.on_step_begin(None, types.SimpleNamespace(global_step=2), None)
        device, host = torch.ones(4, device="meta"), torch.ones(4)
        for read in (lambda: device.sum().item(), lambda: host.sum().item(), lambda: device.to("cpu"),
                     lambda: device.to("cpu", non_blocking=True), lambda: host.to("meta"),
                     lambda: device[device > 0], lambda: torch.empty(4).copy_(device)):
            try:
                read()
            except (RuntimeError, NotImplementedError):
                pass
        census.on_step_end(None, types.SimpleNamespace(global_step=5), None)
        lines = (Path(folder) / "x-host-reads.txt").read_text().splitlines()
    assert lines[0].startswith("x: 4 host reads in 3 optimizer steps")
    assert sorted(line.split()[1] for line in lines[1:]) == ["_local_scalar_dense", "_to_copy", "copy_", "index[bool"]
    assert request.per_step == 4 / 3


def test_on_a_gpu_the_probe_counts_batches_and_times_steps_after_training(monkeypatch):
    """A CUDA probe reads nothing back while training: batches are copied to the host without
    waiting and counted, and step ends (events) turned into seconds, when the summary is asked for."""
    import torch

    class Event:
        clock = [0.0]

        def __init__(self, enable_timing=False):
            self.at = None

        def record(self):
            Event.clock[0] += 0.5
            self.at = Event.clock[0]

        def elapsed_time(self, other):
            return (other.at - self.at) * 1000

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    probe = Probe(ModelShape(10, 2, 5, 1, 4), cuda=True)
    probe.start_event = Event()
    probe.start_event.record()
    labels = torch.tensor([[-100, 3, 4, -100]])
    for _ in range(3):
        probe.count({"labels": labels, "attention_mask": torch.tensor([[1, 1, 1, 0]])})
        assert probe.steps[-1].trained == 0  # not counted yet
        probe.step_ended()
    summary = probe.summary(warmup=1)
    assert [s.trained for s in probe.steps] == [2, 2, 2] and [s.real for s in probe.steps] == [3, 3, 3]
    assert [s.end for s in probe.steps] == [0.5, 1.0, 1.5]
    assert summary["seconds"] == 1.0 and summary["trained_tok_s"] == 4.0
