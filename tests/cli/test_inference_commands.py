"""`tunesmith generate`, `chat`, `predict`, `eval` and `serve` on tiny model folders (no training needed:
a plain model folder loads like a run)."""

import json
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tunesmith.cli.main import main
from tunesmith.inference.handler import ChatInferenceHandler
from tunesmith.inference.runs import load_run
from tunesmith.models.generation import GenerationSettings

PROMPTS = ["Add 1 and 2.", "What is the capital of France? Answer in one word, please.", "Hi"]


@pytest.fixture(scope="module")
def lm(chatty_llama_dir):
    return load_run(chatty_llama_dir, "cpu")


def expected(lm, prompts, tokens=6):
    return ChatInferenceHandler().generate(lm.model, lm.tokenizer, prompts, GenerationSettings(tokens))


# --- generate -----------------------------------------------------------------------------------------
def test_generate_one_prompt(chatty_llama_dir, lm, capsys):
    assert main(["generate", str(chatty_llama_dir), PROMPTS[0], "--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out.strip()
    assert out and out == expected(lm, PROMPTS[:1])[0]


def test_generate_a_jsonl_file(chatty_llama_dir, lm, tmp_path, capsys):
    rows = [{"id": i, "prompt": p} for i, p in enumerate(PROMPTS)]
    src, dst = tmp_path / "prompts.jsonl", tmp_path / "out" / "answers.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert main(["generate", str(chatty_llama_dir), "--input", str(src), "--output", str(dst),
                 "--max-new-tokens", "6", "--batch-size", "2"]) == 0
    assert "Wrote 3 answers" in capsys.readouterr().out
    answers = [json.loads(line) for line in dst.read_text().splitlines()]
    one_by_one = [expected(lm, [p])[0] for p in PROMPTS]
    assert answers == [{**r, "output": o} for r, o in zip(rows, one_by_one)]
    # Without --output the rows go to standard output, in order.
    assert main(["generate", str(chatty_llama_dir), "--input", str(src), "--max-new-tokens", "6"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == answers


@pytest.mark.parametrize("content, message", [
    ('{"prompt": "ok"}\n{"prompt": 3}\n', "prompts.jsonl:2: field 'prompt' must be a string"),
    ('{"text": "no prompt here"}\n', "prompts.jsonl:1: missing field 'prompt' (the row has: text)"),
    ('{"prompt": "ok"}\nnot json\n', "prompts.jsonl:2: invalid JSON"),
    ('\n', "no rows"),
])
def test_generate_refuses_a_bad_file_before_loading(tmp_path, capsys, content, message):
    src = tmp_path / "prompts.jsonl"
    src.write_text(content)
    assert main(["generate", str(tmp_path / "no-run"), "--input", str(src)]) == 2
    assert message in capsys.readouterr().err


def test_generate_needs_exactly_one_source(chatty_llama_dir, tmp_path, capsys):
    assert main(["generate", str(chatty_llama_dir)]) == 2
    assert "give either PROMPT or --input" in capsys.readouterr().err
    assert main(["generate", str(chatty_llama_dir), "hi", "--temperature", "0"]) == 2
    assert "--temperature: 0.0 is not allowed" in capsys.readouterr().err


# --- chat -----------------------------------------------------------------------------------------------
def test_chat_keeps_the_history_and_streams(chatty_llama_dir, monkeypatch, capsys):
    lines = iter(["What is 2 + 3?", "And plus 1?", "/reset", "Hello again", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    seen = []
    real = ChatInferenceHandler.stream_chat

    def spy(self, model, tokenizer, messages, settings):
        seen.append([(m.role, m.content) for m in messages])
        return real(self, model, tokenizer, messages, settings)

    monkeypatch.setattr(ChatInferenceHandler, "stream_chat", spy)
    assert main(["chat", str(chatty_llama_dir), "--max-new-tokens", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("model> ") == 3
    assert [len(s) for s in seen] == [1, 3, 1]  # the second turn sees the first exchange; /reset clears it
    assert seen[1][0] == ("user", "What is 2 + 3?") and seen[1][1][0] == "assistant" and seen[1][1][1]
    assert seen[1][1][1] in out  # the streamed reply was printed


# --- predict --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from tunesmith.models.loading import load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer("minilm-l6")
    folder = tmp_path_factory.mktemp("tiny-classifier")
    BertForSequenceClassification(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, initializer_range=0.5, num_labels=2, id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1})).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_predict_one_text_and_a_file(classifier_dir, tmp_path, capsys):
    from tunesmith.inference.predict import predict_labels

    run = load_run(classifier_dir, "cpu")
    texts = ["A wonderful film.", "A dull and tiring film."]
    pairs = ["I loved it.", "I left early."]
    truth = predict_labels(run.model, run.tokenizer, texts, pairs)
    assert main(["predict", str(classifier_dir), texts[0], "--pair", pairs[0]]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{truth[0]['label']} ({truth[0]['confidence']:.1%};") and "negative" in line
    src, dst = tmp_path / "texts.jsonl", tmp_path / "labels.jsonl"
    src.write_text("\n".join(json.dumps({"review": t, "reply": p, "label": "?"}) for t, p in zip(texts, pairs)))
    assert main(["predict", str(classifier_dir), "--input", str(src), "--output", str(dst), "--field", "review",
                 "--pair-field", "reply"]) == 0
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["predicted"] for r in rows] == [t["label"] for t in truth]
    assert rows[1]["confidence"] == pytest.approx(truth[1]["confidence"]) and rows[1]["label"] == "?"  # kept
    assert set(rows[0]["scores"]) == {"negative", "positive"}


def test_predict_refuses_a_language_model(chatty_llama_dir, capsys):
    assert main(["predict", str(chatty_llama_dir), "some text"]) == 2
    assert "holds a language model, not a classifier" in capsys.readouterr().err


# --- eval -----------------------------------------------------------------------------------------------
@pytest.fixture
def qa_file(tmp_path):
    rows = [{"question": f"What is {a} plus {b}?", "answer": str(a + b)} for a, b in [(1, 2), (3, 4), (5, 6)]]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_eval_a_run_on_any_data_with_any_metric(chatty_llama_dir, lm, qa_file, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(chatty_llama_dir, run)
    # data.train names the same file: the default (built-in arith) would add its system prompt.
    assert main(["eval", str(run), "--data", str(qa_file), "--metric", "rouge_l", "eval.max_new_tokens=5",
                 f"data.train={qa_file}"]) == 0
    out = capsys.readouterr().out
    saved = json.loads((run / "eval_rouge_l.json").read_text())
    assert f"{run}: ROUGE-L" in out and f"Saved {run / 'eval_rouge_l.json'}" in out
    assert saved["metric"] == "rouge_l" and saved["total"] == 3 and saved["data"] == str(qa_file)
    outputs = expected(lm, [f"What is {a} plus {b}?" for a, b in [(1, 2), (3, 4), (5, 6)]], tokens=5)
    assert [s["output"] for s in saved["samples"]] == outputs
    assert saved["settings"] == {"max_new_tokens": 5, "do_sample": False}
    # auto picks exact match for data with an answer column; perplexity needs no generation.
    assert main(["eval", str(run), "--data", str(qa_file), "--samples", "2", "eval.max_new_tokens=4"]) == 0
    assert json.loads((run / "eval_exact_match.json").read_text())["total"] == 2
    assert main(["eval", str(run), "--data", str(qa_file), "--metric", "perplexity"]) == 0
    ppl = json.loads((run / "eval_perplexity.json").read_text())
    assert ppl["tokens"] > 0 and ppl["score"] == pytest.approx(ppl["perplexity"]) and ppl["perplexity"] > 1


def test_eval_a_base_model_with_overrides(chatty_llama_dir, qa_file, tmp_path, capsys):
    out = tmp_path / "base.json"
    assert main(["eval", "--base", str(chatty_llama_dir), f"data.eval={qa_file}", "eval.metric=exact_match",
                 "eval.max_new_tokens=4", "eval.do_sample=true", "--out", str(out)]) == 0
    assert f"{chatty_llama_dir}: exact match" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["model"] == str(chatty_llama_dir) and result["settings"]["do_sample"] is True


@pytest.mark.parametrize("argv, message", [
    (["eval"], "give a RUN_DIR"),
    (["eval", "eval.metric=rouge_l"], "give a RUN_DIR"),
    (["eval", "--base", "m", "runs/x"], "with --base give only key=value overrides"),
    (["eval", "--base", "m", "--samples", "0"], "--samples: 0 is not allowed"),
])
def test_eval_argument_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_eval_refuses_a_metric_that_does_not_fit(chatty_llama_dir, qa_file, capsys):
    assert main(["eval", "--base", str(chatty_llama_dir), f"data.eval={qa_file}", "eval.metric=accuracy"]) == 2
    assert "'accuracy' scores a classifier's labels, but the model is causal_lm" in capsys.readouterr().err
    assert main(["eval", "--base", str(chatty_llama_dir), "eval.metric=rogue"]) == 2
    assert "Did you mean 'rouge_l'" in capsys.readouterr().err


# --- serve ----------------------------------------------------------------------------------------------
def test_serve_answers_over_http_until_stopped(chatty_llama_dir, lm):
    httpx = pytest.importorskip("httpx")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith", "serve", str(chatty_llama_dir), "--port", str(port),
                             "--model-name", "tiny"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "the server did not come up"
            time.sleep(0.5)
        r = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
            "model": "tiny", "max_tokens": 6, "messages": [{"role": "user", "content": PROMPTS[0]}]})
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == expected(lm, PROMPTS[:1])[0]
        bad = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={"model": "tiny", "messages": "hi"})
        assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert "Serving 'tiny' at http://127.0.0.1:" in proc.stdout.read()


def test_serve_refuses_a_bad_port(chatty_llama_dir, capsys):
    assert main(["serve", str(chatty_llama_dir), "--port", "70000"]) == 2
    assert "--port: 70000 is not allowed" in capsys.readouterr().err


def test_eval_a_classifier_prints_the_confusion_matrix(classifier_dir, tmp_path, capsys):
    run = tmp_path / "cls"
    shutil.copytree(classifier_dir, run)
    assert main(["eval", str(run), "data.train=sentiment", "data.max_samples=16", "--samples", "40"]) == 0
    out = capsys.readouterr().out
    saved = json.loads((run / "eval_accuracy.json").read_text())
    assert saved["total"] == 40 and saved["metric"] == "accuracy"
    assert f"accuracy {saved['accuracy']:.1%} ({saved['correct']}/40), macro F1 {saved['macro_f1']:.3f}" in out
    assert "true \\ pred" in out and "negative" in out and saved["confusion_matrix"]["labels"] == ["negative",
                                                                                                 "positive"]
