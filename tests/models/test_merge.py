"""Merging runs into standalone folders: plain transformers (never tunesmith) loads them, and the
merged logits equal base + adapter."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tunesmith.api import FineTuner
from tunesmith.config import load_config, save_config
from tunesmith.errors import ConfigError, RunDirError
from tunesmith.inference import runs
from tunesmith.inference.runs import load_run
from tunesmith.models import merge
from tunesmith.api.exports import merge_run

FP32_ATOL = 1e-4
FAST = ["train.max_steps=4", "train.batch_size=4", "train.lr=1e-2", "train.scheduler=constant",
        "train.warmup_ratio=0", "train.logging_steps=1", "train.precision=fp32", "eval.before_after=off",
        "data.cache=false"]

# Loads a folder with transformers in a fresh interpreter where importing tunesmith fails, then
# checks that tunesmith never entered sys.modules.
PLAIN_LOAD = r"""
import importlib.abc, json, sys

class NoTunesmith(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tunesmith":
            raise ImportError("tunesmith may not be imported here")

sys.meta_path.insert(0, NoTunesmith())
import torch, transformers

folder, cls_name, ids, out_file = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
model = getattr(transformers, cls_name).from_pretrained(folder).eval()
tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
ids = torch.tensor(ids)
with torch.no_grad():
    extra = {"decoder_input_ids": ids[:, :3]} if model.config.is_encoder_decoder else {}
    torch.save(model(input_ids=ids, **extra).logits, out_file)
assert not [m for m in sys.modules if m.split(".")[0] == "tunesmith"], "tunesmith was imported"
print(json.dumps({"id2label": model.config.id2label, "dtype": str(next(model.parameters()).dtype),
                  "chat_template": tokenizer.chat_template, "class": type(model).__name__}))
"""


def plain_logits(folder: Path, cls_name: str, ids: list[list[int]], tmp: Path) -> tuple[torch.Tensor, dict]:
    out_file = tmp / "plain_logits.pt"
    proc = subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(folder), cls_name, json.dumps(ids), str(out_file)],
                          capture_output=True, text=True, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out_file, weights_only=True), json.loads(proc.stdout.strip().splitlines()[-1])


def tuned_logits(run_dir: Path, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the run as tunesmith loads it (base + adapter, not merged) and of its base alone."""
    model = load_run(run_dir, "cpu").model.float()
    ids_t = torch.tensor(ids)
    extra = {"decoder_input_ids": ids_t[:, :3]} if model.config.is_encoder_decoder else {}
    with torch.no_grad():
        tuned = model(input_ids=ids_t, **extra).logits
        with model.disable_adapter():
            base = model(input_ids=ids_t, **extra).logits
    return tuned, base


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture(scope="module")
def llama_runs(tmp_path_factory, tiny_llama_dir):
    tmp = tmp_path_factory.mktemp("llama-runs")
    rows = [{"instruction": f"Add {a} and {b}.", "output": f"#### {a + b}"} for a in range(6) for b in range(4)]
    data = tmp / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    common = [f"model.name_or_path={tiny_llama_dir}", f"data.train={data}", "data.format=alpaca", *FAST]
    lora = FineTuner(load_config(overrides=[*common, f"output_dir={tmp / 'lora'}"])).train().run_dir
    full = FineTuner(load_config(overrides=[*common, f"output_dir={tmp / 'full'}", "peft=full",
                                            "train.lr=1e-3"])).train().run_dir
    return {"lora": lora, "full": full}


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification

    from tunesmith.models.loading import load_tokenizer

    tmp = tmp_path_factory.mktemp("bert-run")
    tok = load_tokenizer("minilm-l6")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(tmp / "tiny-bert")
    tok.save_pretrained(tmp / "tiny-bert")
    cfg = load_config(overrides=[f"model.name_or_path={tmp / 'tiny-bert'}", "model.task=sequence_classification",
                                 "data=sentiment", "data.max_samples=64", f"output_dir={tmp / 'out'}",
                                 "peft.target_modules=[query,value]", *FAST, "train.batch_size=8"])
    return FineTuner(cfg).train().run_dir


def token_ids(run_dir: Path, texts: list[str]) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run_dir)
    ids = [tok(t)["input_ids"] for t in texts]
    n = min(len(i) for i in ids)
    return [i[:n] for i in ids]  # equal lengths: no padding, so no attention mask is needed


def test_run_layout_names_match_inference():
    # Both read the run directory through its one owner of file names.
    assert merge.RunDir is runs.RunDir


def test_merged_causal_lm_equals_base_plus_adapter(llama_runs, tmp_path):
    run_dir = llama_runs["lora"]
    out = merge_run(run_dir, tmp_path / "merged")
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "chat_template.jinja", "README.md", "tunesmith_merge.json"} <= files
    assert not any(name.startswith("adapter_") for name in files)
    ids = token_ids(run_dir, ["Add 1 and 2.", "What is 3 plus 4 then?"])
    merged, info = plain_logits(out, "AutoModelForCausalLM", ids, tmp_path)
    tuned, base = tuned_logits(run_dir, ids)
    diff = max_diff(merged, tuned)
    print(f"\ncausal LM fp32: max |merged - (base + adapter)| = {diff:.3e}")
    assert diff < FP32_ATOL
    assert max_diff(merged, base) > 100 * FP32_ATOL  # the adapter matters, so the test is not vacuous
    assert info["chat_template"] == (run_dir / "chat_template.jinja").read_text()
    assert info["class"] == "LlamaForCausalLM" and info["dtype"] == "torch.float32"
    record = json.loads((out / "tunesmith_merge.json").read_text())
    assert record["source_run"] == str(run_dir.resolve()) and record["adapter_merged"] is True
    assert record["method"] == "lora" and record["task"] == "causal_lm"


def test_merged_classifier_keeps_its_head_and_labels(bert_run, tmp_path):
    from safetensors.torch import load_file

    out = merge_run(bert_run, tmp_path / "merged")
    ids = token_ids(bert_run, ["a wonderful film", "dull and too long"])
    merged, info = plain_logits(out, "AutoModelForSequenceClassification", ids, tmp_path)
    tuned, base = tuned_logits(bert_run, ids)
    diff = max_diff(merged, tuned)
    print(f"\nBERT classifier fp32: max |merged - (base + adapter)| = {diff:.3e}")
    assert diff < FP32_ATOL
    assert max_diff(merged, base) > 100 * FP32_ATOL
    assert info["id2label"] == {"0": "negative", "1": "positive"}
    assert info["class"] == "BertForSequenceClassification"
    trained_head = load_file(bert_run / "adapter_model.safetensors")
    head = {k: v for k, v in trained_head.items() if "classifier" in k}
    assert head  # the head trains in full next to the adapter (modules_to_save)
    weights = load_file(out / "model.safetensors")
    cfg_base = Path(json.loads((out / "tunesmith_merge.json").read_text())["base_model"])
    base_weights = load_file(cfg_base / "model.safetensors")
    query = "bert.encoder.layer.0.attention.self.query.weight"
    assert max_diff(weights[query], base_weights[query]) > 1e-3  # the LoRA update is merged in
    for name, value in head.items():  # e.g. base_model.model.classifier.modules_to_save.weight (peft may vary)
        plain = "classifier." + name.rsplit(".", 1)[-1]
        assert torch.equal(weights[plain], value), name


def test_full_run_is_resaved_in_the_requested_dtype(llama_runs, tmp_path):
    from safetensors import safe_open

    run_dir = llama_runs["full"]
    out = merge_run(run_dir, tmp_path / "bf16", dtype="bfloat16")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    ids = token_ids(run_dir, ["Add 1 and 2.", "Add 5 and 3 please."])
    merged, info = plain_logits(out, "AutoModelForCausalLM", ids, tmp_path)
    with torch.no_grad():
        tuned = load_run(run_dir, "cpu").model.float()(input_ids=torch.tensor(ids)).logits
    diff = max_diff(merged, tuned)
    print(f"\nfull run saved as bf16: max |bf16 - fp32| = {diff:.3e}")
    assert info["dtype"] == "torch.bfloat16" and diff < 5e-2
    record = json.loads((out / "tunesmith_merge.json").read_text())
    assert record["adapter_merged"] is False and record["method"] == "full" and record["dtype"] == "bfloat16"
    same = merge_run(run_dir, tmp_path / "auto")  # auto: the dtype the run saved, fp32 here
    assert json.loads((same / "tunesmith_merge.json").read_text())["dtype"] == "float32"


def test_stored_dtype_reads_the_checkpoint_config():
    from transformers import LlamaConfig

    assert merge.stored_dtype(LlamaConfig(dtype="bfloat16")) == "bfloat16"
    assert merge.stored_dtype(LlamaConfig(dtype=torch.float16)) == "float16"
    assert merge.stored_dtype(LlamaConfig()) == "float32"


def test_non_empty_out_dir_needs_overwrite(llama_runs, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty"):
        merge_run(llama_runs["lora"], out)
    assert (out / "keep.txt").read_text() == "mine"
    merge_run(llama_runs["lora"], out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()


def test_never_overwrites_the_run_itself(llama_runs):
    run_dir = llama_runs["lora"]
    for target in (run_dir, run_dir.parent):
        with pytest.raises(RunDirError, match="would replace the run"):
            merge_run(run_dir, target, overwrite=True)
    assert (run_dir / "adapter_model.safetensors").is_file()


def test_bad_dtype_and_bad_run_dirs_fail_before_loading(llama_runs, tmp_path):
    with pytest.raises(ConfigError, match="'float8' is not allowed; allowed: auto, float32, bfloat16, float16"):
        merge_run(tmp_path / "no-such-run", tmp_path / "out", dtype="float8")
    with pytest.raises(RunDirError, match="no-such-run: does not exist"):
        merge_run(tmp_path / "no-such-run", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="not a tunesmith run directory"):
        merge_run(tmp_path / "empty", tmp_path / "out")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(llama_runs["lora"], unfinished)
    (unfinished / "run.json").unlink()
    with pytest.raises(RunDirError, match="did not finish"):
        merge_run(unfinished, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def with_method(run_dir: Path, dest: Path, method: str) -> Path:
    """A copy of a run whose config.yaml names another peft.method."""
    import yaml

    shutil.copytree(run_dir, dest)
    raw = yaml.safe_load((dest / "config.yaml").read_text())
    raw["peft"]["method"] = method
    (dest / "config.yaml").write_text(yaml.safe_dump(raw))
    return dest


@pytest.mark.parametrize("method", ["qlora", "int8"])
def test_quantized_run_merges_into_the_float_base(llama_runs, tmp_path, monkeypatch, method):
    from safetensors.torch import load_file

    def no_quantization(*args, **kwargs):
        raise AssertionError("merge must not load the base quantized")

    monkeypatch.setattr(merge, "_quantization_kwargs", no_quantization)
    run_dir = with_method(llama_runs["lora"], tmp_path / "run", method)
    quantized = load_file(merge_run(run_dir, tmp_path / "q") / "model.safetensors")
    plain = load_file(merge_run(llama_runs["lora"], tmp_path / "lora") / "model.safetensors")
    assert quantized.keys() == plain.keys()
    assert all(torch.equal(quantized[k], plain[k]) for k in plain)
    assert "quantization_config" not in json.loads((tmp_path / "q" / "config.json").read_text())


def fabricate_run(run_dir: Path, base_dir: Path, model, target_modules: list[str], task_type: str,
                  overrides: list[str]) -> Path:
    """A finished run written by hand: config.yaml, a LoRA adapter with random (non-zero) weights,
    the tokenizer and run.json."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    run_dir.mkdir(parents=True)
    save_config(load_config(overrides=[f"model.name_or_path={base_dir}", *overrides]), run_dir / "config.yaml")
    torch.manual_seed(1)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=target_modules, task_type=task_type, init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(run_dir)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(run_dir)
    (run_dir / "run.json").write_text(json.dumps({"finished": "2025-01-01T00:00:00", "global_step": 0}))
    return run_dir


def test_seq2seq_run_merges(tmp_path, smol_tokenizer):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=len(smol_tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      decoder_start_token_id=smol_tokenizer.pad_token_id, pad_token_id=smol_tokenizer.pad_token_id)
    base_dir = tmp_path / "tiny-t5"
    T5ForConditionalGeneration(config).save_pretrained(base_dir)
    smol_tokenizer.save_pretrained(base_dir)
    run_dir = fabricate_run(tmp_path / "run", base_dir, T5ForConditionalGeneration.from_pretrained(base_dir),
                            ["q", "v"], "SEQ_2_SEQ_LM", ["model.task=seq2seq"])
    out = merge_run(run_dir, tmp_path / "merged")
    ids = token_ids(run_dir, ["Summarize: the cat sat.", "Summarize: a dog ran far."])
    merged, info = plain_logits(out, "AutoModelForSeq2SeqLM", ids, tmp_path)
    tuned, base = tuned_logits(run_dir, ids)
    diff = max_diff(merged, tuned)
    print(f"\nT5 seq2seq fp32: max |merged - (base + adapter)| = {diff:.3e}")
    assert diff < FP32_ATOL and max_diff(merged, base) > 100 * FP32_ATOL
    assert info["class"] == "T5ForConditionalGeneration"


def test_prequantized_checkpoint_is_dequantized_before_merging(tmp_path, smol_tokenizer):
    quantization = pytest.importorskip("tunesmith.models.quantization")
    if not hasattr(quantization, "dequantized_state_dict"):
        pytest.skip("tunesmith.models.quantization.dequantized_state_dict is not there yet")
    bnb = pytest.importorskip("bitsandbytes")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

    # Hidden size 64: bitsandbytes' CPU kernels need dimensions of at least one 64-value block.
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(smol_tokenizer), tie_word_embeddings=True)
    float_dir, base_dir = tmp_path / "float-base", tmp_path / "q4-base"
    LlamaForCausalLM(config).save_pretrained(float_dir)
    q4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    AutoModelForCausalLM.from_pretrained(float_dir, quantization_config=q4).save_pretrained(base_dir)
    smol_tokenizer.save_pretrained(base_dir)
    run_dir = fabricate_run(tmp_path / "run", base_dir, LlamaForCausalLM.from_pretrained(float_dir),
                            ["q_proj", "v_proj", "down_proj"], "CAUSAL_LM", ["peft=qlora"])
    out = merge_run(run_dir, tmp_path / "merged")
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    ids = token_ids(run_dir, ["Add 1 and 2.", "What is 3 plus 4 then?"])
    merged, info = plain_logits(out, "AutoModelForCausalLM", ids, tmp_path)
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), run_dir).eval()
    for module in reference.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            # Keeps the standard 4-bit layout: the CPU inference repacking stores block scales in bf16.
            module.support_avx512bf16_for_cpu = False
    with torch.no_grad():
        tuned = reference(input_ids=torch.tensor(ids)).logits
    diff = max_diff(merged, tuned)
    print(f"\n4-bit checkpoint: max |dequantized merged - (4-bit base + adapter)| = {diff:.3e}")
    assert diff < FP32_ATOL and info["dtype"] == "torch.float32"
