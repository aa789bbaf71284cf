"""The OpenAI-compatible server on a real port, driven by a real HTTP client (httpx)."""

import json

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from tunesmith.data.examples import Message  # noqa: E402
from tunesmith.errors import ModelError  # noqa: E402
from tunesmith.inference.handler import ChatInferenceHandler  # noqa: E402
from tunesmith.inference.openai_protocol import StopFilter  # noqa: E402
from tunesmith.inference.runs import load_run  # noqa: E402
from tunesmith.inference.server import build_app  # noqa: E402
from tunesmith.models.generation import GenerationSettings  # noqa: E402

NAME = "tiny-run"


@pytest.fixture(scope="module")
def run(chatty_llama_dir):
    return load_run(chatty_llama_dir, "cpu")


@pytest.fixture(scope="module")
def handler():
    return ChatInferenceHandler(system_prompt="Answer briefly.")


@pytest.fixture(scope="module")
def base_url(run, handler, serve_on_localhost):
    return serve_on_localhost(build_app(run.model, run.tokenizer, handler, NAME))


def chat(base_url, **body):
    payload = {"model": NAME, "messages": [{"role": "user", "content": "Add 1 and 2."}], "max_tokens": 8, **body}
    return httpx.post(f"{base_url}/v1/chat/completions", json=payload, timeout=120)


def test_models_lists_the_run(base_url):
    r = httpx.get(f"{base_url}/v1/models", timeout=30)
    assert r.status_code == 200
    assert [(m["id"], m["object"]) for m in r.json()["data"]] == [(NAME, "model")]


def test_chat_completion_matches_the_handler(base_url, run, handler):
    r = chat(base_url)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = handler.chat(run.model, run.tokenizer, [Message("user", "Add 1 and 2.")], GenerationSettings(8))
    assert expected  # the chatty tiny model writes words
    assert body["object"] == "chat.completion" and body["model"] == NAME and body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": expected}
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    prompt = run.tokenizer.apply_chat_template([{"role": "system", "content": "Answer briefly."},
                                                {"role": "user", "content": "Add 1 and 2."}],
                                               add_generation_prompt=True, tokenize=False)
    assert usage["prompt_tokens"] == len(run.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    # The chatty model does not stop by itself: it uses the whole budget.
    assert usage["completion_tokens"] == 8 and choice["finish_reason"] == "length"
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_streaming_sends_chunks_that_add_up_to_the_reply(base_url):
    whole = chat(base_url).json()["choices"][0]["message"]["content"]
    events = []
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", timeout=120,
                      json={"model": NAME, "stream": True, "max_tokens": 8,
                            "messages": [{"role": "user", "content": "Add 1 and 2."}]}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[len("data: "):])
    assert whole and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole


def test_a_seeded_sampled_request_repeats(base_url):
    a = chat(base_url, temperature=1.2, seed=3, max_tokens=10).json()["choices"][0]["message"]["content"]
    b = chat(base_url, temperature=1.2, seed=3, max_tokens=10).json()["choices"][0]["message"]["content"]
    assert a == b


@pytest.mark.parametrize("body, status, param, message", [
    ({"model": "gpt-4"}, 404, "model", "'gpt-4' is not served here; this server serves 'tiny-run'"),
    ({"messages": []}, 400, "messages", "messages: List should have at least 1 item"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages", "messages.0.role"),
    ({"messages": [{"role": "user"}]}, 400, "messages", "messages.0.content: Field required"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, 400, "messages",
     "the last message must come from the user"),
    ({"max_tokens": 0}, 400, "max_tokens", "max_tokens: Input should be greater than or equal to 1"),
    ({"max_tokens": 100000}, 400, "max_tokens", "above this server's limit"),
    ({"temperature": 5}, 400, "temperature", "temperature: Input should be less than or equal to 2"),
    ({"n": 3}, 400, "n", "only 1 choice per request"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools", "tools: not supported"),
    ({"stream": "sometimes"}, 400, "stream", "stream: Input should be a valid boolean"),
])
def test_bad_requests_get_a_4xx_with_a_clear_message(base_url, body, status, param, message):
    r = chat(base_url, **body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error["message"] and error["param"] == param and error["type"] == "invalid_request_error"


def test_malformed_bodies_and_unknown_routes(base_url):
    r = httpx.post(f"{base_url}/v1/chat/completions", content=b"{not json", timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "the request body is not valid JSON"
    r = httpx.post(f"{base_url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]},
                   timeout=30)
    assert r.status_code == 400 and "model: Field required" in r.json()["error"]["message"]
    r = httpx.post(f"{base_url}/v1/completions", json={}, timeout=30)
    assert r.status_code == 404 and "POST /v1/chat/completions" in r.json()["error"]["message"]
    r = httpx.get(f"{base_url}/v1/chat/completions", timeout=30)
    assert r.status_code == 405 and "GET is not allowed" in r.json()["error"]["message"]


def test_stop_strings_cut_the_reply_even_across_pieces():
    f = StopFilter(["\n\n", "END"])
    sent = [f.feed(p) for p in ["Hello", "\n", "wor", "ld E", "N", "D and more"]]
    assert "".join(sent) + f.finish() == "Hello\nworld " and f.stopped
    g = StopFilter(["###"])
    assert "".join(g.feed(p) for p in ["a#", "#b"]) + g.finish() == "a##b" and not g.stopped


def test_stop_reaches_the_model_output(base_url):
    whole = chat(base_url, max_tokens=12).json()["choices"][0]["message"]["content"]
    assert len(whole) >= 4  # the seeded tiny model writes 12 tokens of text
    cut = whole[2:4]
    body = chat(base_url, max_tokens=12, stop=[cut]).json()
    assert body["choices"][0]["message"]["content"] == whole[:whole.index(cut)].strip()
    assert body["choices"][0]["finish_reason"] == "stop"


def test_a_classifier_is_not_served(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ModelError, match="classifier"):
        build_app(model, None, ChatInferenceHandler(), "x")


def test_a_handler_without_stream_chat_is_refused(run):
    class GenerateOnly:
        def generate(self, model, tokenizer, prompts, settings):
            return ["x"] * len(prompts)

    with pytest.raises(ModelError, match="stream_chat"):
        build_app(run.model, run.tokenizer, GenerateOnly(), "x")


def test_a_client_that_hangs_up_mid_stream_does_not_block_the_next_request(base_url):
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", timeout=120,
                      json={"model": NAME, "stream": True, "max_tokens": 64,
                            "messages": [{"role": "user", "content": "Tell me a long story."}]}) as r:
        first = next(r.iter_lines())
        assert first.startswith("data: ")
    # The abandoned generation finishes (or is drained) before the lock is handed on.
    after = chat(base_url, max_tokens=4)
    assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] == 4
