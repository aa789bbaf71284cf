"""The packaged model through the real command line: train a few steps, generate, evaluate."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def tunesmith(*args, check=True):
    out = subprocess.run([sys.executable, "-m", "tunesmith", *args], capture_output=True, text=True, timeout=900)
    if check and out.returncode != 0:
        raise AssertionError(f"tunesmith {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "run"
    result = tunesmith("train", "train=quick", "eval.max_samples=4", "eval.max_new_tokens=24", f"output_dir={out}")
    assert "Held-out exact match" in result.stdout and "fine-tuned" in result.stdout
    return out


def test_adapter_trained_and_base_untouched(run_dir, smol_tokenizer_dir):
    from tunesmith.inference.runs import load_run

    adapter = load_file(run_dir / "adapter_model.safetensors")
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # lora_B starts at zero
    base = load_file(smol_tokenizer_dir / "model.safetensors")
    run = load_run(run_dir)
    checked = 0
    for name, p in run.model.named_parameters():
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        if "lora_" not in name and key in base:
            assert torch.equal(p.detach(), base[key]), name
            checked += 1
    assert checked > 100


def test_generate_and_eval_from_the_run_dir(run_dir):
    out = tunesmith("generate", str(run_dir), "Tom has 3 apples and buys 4 more. How many apples now?",
                    "--max-new-tokens", "24")
    assert out.stdout.strip()
    ev = tunesmith("eval", str(run_dir), "--samples", "4")
    assert "exact match" in ev.stdout
    assert (run_dir / "eval_exact_match.json").is_file()


def test_second_run_into_the_same_folder_is_refused(run_dir):
    out = tunesmith("train", "train=quick", f"output_dir={run_dir}", check=False)
    assert out.returncode == 2 and "not empty" in out.stderr


def test_classifier_on_the_packaged_encoder(tmp_path):
    out = tmp_path / "cls"
    result = tunesmith("train", "model=minilm-l6", "data=sentiment", "train=quick", "train.batch_size=16",
                       "data.max_samples=64", f"output_dir={out}")
    assert "Held-out accuracy" in result.stdout and "Confusion matrix" in result.stdout
    ev = tunesmith("eval", str(out), "--samples", "40")
    assert "macro F1" in ev.stdout and (out / "eval_accuracy.json").is_file()
    predicted = tunesmith("predict", str(out), "A wonderful film, I loved every minute.")
    assert predicted.stdout.split()[0] in ("negative", "positive")
    assert "Confusion matrix, fine-tuned" in (out / "report.html").read_text()


def test_qlora_on_the_packaged_model_then_merge(tmp_path):
    out, merged = tmp_path / "q", tmp_path / "merged"
    tunesmith("train", "peft=qlora", "train=quick", "train.max_steps=2", "eval.before_after=off",
              "data.max_samples=16", f"output_dir={out}")
    tunesmith("merge", str(out), str(merged))
    code = ("import sys, torch; from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"m = AutoModelForCausalLM.from_pretrained({str(merged)!r}); t = AutoTokenizer.from_pretrained({str(merged)!r})\n"
            "ids = t.apply_chat_template([{'role': 'user', 'content': 'Hi'}], add_generation_prompt=True, return_tensors='pt')\n"
            "print(m(**ids).logits.shape[-1], 'tunesmith' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-2:] == ["49152", "False"]


def test_chat_keeps_history_and_streams(run_dir):
    out = subprocess.run([sys.executable, "-m", "tunesmith", "chat", str(run_dir), "--max-new-tokens", "12"],
                         input="What is 2 + 3?\nAnd plus 1 more?\n/reset\n/exit\n", capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("model> ") == 2 and "you> " in out.stdout


def test_eval_of_the_base_model(run_dir):
    ev = tunesmith("eval", "--base", "smollm2-135m-instruct", "--samples", "2")
    assert "smollm2-135m-instruct: exact match" in ev.stdout


def test_report_and_openai_compatible_server_on_the_trained_run(run_dir):
    import json
    import socket
    import time

    httpx = pytest.importorskip("httpx")
    report = (run_dir / "report.html").read_text()
    assert "Before and after" in report and "Sample generations" in report and "data:image/png;base64," in report
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith", "serve", str(run_dir), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 600
        while True:
            assert proc.poll() is None and time.time() < deadline, "the server did not come up"
            try:
                models = httpx.get(f"{url}/models", timeout=5).json()["data"]
                break
            except httpx.TransportError:
                time.sleep(1)
        body = {"model": models[0]["id"], "max_tokens": 40,
                "messages": [{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples now?"}]}
        answer = httpx.post(f"{url}/chat/completions", json=body, timeout=300).json()["choices"][0]["message"]["content"]
        assert answer.strip()
        with httpx.stream("POST", f"{url}/chat/completions", json={**body, "stream": True}, timeout=300) as r:
            events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        streamed = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
        assert streamed == answer  # greedy: the same reply, streamed
    finally:
        proc.terminate()
        proc.wait(timeout=60)
