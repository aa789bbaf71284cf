"""``tunesmith serve`` under bad requests and clients that hang up (real port, real HTTP client, localhost only)."""

import json
import os
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from tunesmith.inference.handler import ChatInferenceHandler  # noqa: E402
from tunesmith.inference.server import build_app, fit_context  # noqa: E402

NAME = "long-context"
CONTEXT = 4096  # long enough that a hung-up request could keep the model busy for many seconds
LONG = 3000  # new tokens a hung-up request asks for: seconds of work on this CPU unless it is cancelled


@pytest.fixture(scope="module")
def long_model(smol_tokenizer):
    """A tiny Llama with a 4096-token context and varied output (it rarely ends early with EOS)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(smol_tokenizer), max_position_embeddings=CONTEXT,
                         initializer_range=0.2, bos_token_id=smol_tokenizer.bos_token_id,
                         eos_token_id=smol_tokenizer.eos_token_id, pad_token_id=smol_tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def base_url(long_model, smol_tokenizer, serve_on_localhost):
    return serve_on_localhost(build_app(long_model, smol_tokenizer, ChatInferenceHandler(), NAME))


def post(base_url, timeout=120, **body):
    payload = {"model": NAME, "messages": [{"role": "user", "content": "Add 1 and 2."}], "max_tokens": 4, **body}
    # json.dumps writes NaN / Infinity as JavaScript clients do (httpx's json= refuses them).
    return httpx.post(f"{base_url}/v1/chat/completions", content=json.dumps(payload), timeout=timeout,
                      headers={"content-type": "application/json"})


@pytest.mark.parametrize("body, param, message", [
    ({"seed": -1}, "seed", "seed: Input should be greater than or equal to 0"),
    ({"seed": 2**32}, "seed", "seed: Input should be less than or equal to 4294967295"),
    ({"temperature": float("nan")}, "temperature", "temperature: Input should be a finite number"),
    ({"top_p": float("inf")}, "top_p", "top_p: Input should be a finite number"),
])
def test_out_of_range_seed_and_nan_are_400_with_the_field(base_url, body, param, message):
    r = post(base_url, **body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert message in error["message"] and error["param"] == param


def test_a_prompt_longer_than_the_context_is_400_with_the_lengths(base_url):
    r = post(base_url, messages=[{"role": "user", "content": "word " * CONTEXT}])
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert f"the model's context is {CONTEXT} tokens" in message and "the prompt is " in message
    r = post(base_url, max_tokens=CONTEXT)  # a short prompt, but prompt + reply do not fit
    assert r.status_code == 400 and f"asks for {CONTEXT} more" in r.json()["error"]["message"]


def test_fit_context_shrinks_only_an_unset_budget():
    assert fit_context(100, None, 512, 256) == (256, None)
    assert fit_context(400, None, 512, 256) == (112, None)
    assert fit_context(400, 100, 512, 256)[1] is None
    assert fit_context(400, 113, 512, 256)[0] == 0
    assert fit_context(100, 4000, None, 256) == (4000, None)  # no known limit: nothing to check


def _hang_up_streaming(base_url, got_first):
    body = {"model": NAME, "stream": True, "max_tokens": LONG, "messages": [{"role": "user", "content": "Go on."}]}
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                got_first.set()
                break  # leaving the block closes the connection in the middle of the answer


def _hang_up_plain(base_url):
    try:
        post(base_url, timeout=0.5, max_tokens=LONG)
    except httpx.TimeoutException:
        pass  # the client gave up and closed its connection


def test_clients_that_hang_up_do_not_slow_the_next_request(base_url):
    """Three streaming and two plain clients ask for 3000 tokens each and hang up; each next request is
    then answered within 1 s (without cancellation the model would first write all 15,000 tokens)."""
    assert post(base_url).status_code == 200  # warm up
    start = time.perf_counter()
    post(base_url, max_tokens=200)
    per_token = (time.perf_counter() - start) / 200
    assert per_token * LONG > 1.0, "the hung-up requests must be long enough to matter"

    for round_ in range(2):
        got_first = [threading.Event() for _ in range(3)]
        clients = [threading.Thread(target=_hang_up_streaming, args=(base_url, e)) for e in got_first]
        clients += [threading.Thread(target=_hang_up_plain, args=(base_url,)) for _ in range(2)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=60)
        assert not any(c.is_alive() for c in clients)
        assert any(e.is_set() for e in got_first), "a streaming client received part of an answer first"
        start = time.perf_counter()
        r = post(base_url, timeout=30)
        waited = time.perf_counter() - start
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
        assert waited < 1.0, f"round {round_}: the next request waited {waited:.2f} s"


def test_a_failing_generation_is_a_json_500_or_an_error_event(long_model, smol_tokenizer):
    from starlette.testclient import TestClient

    class Failing(ChatInferenceHandler):
        def stream_chat(self, model, tokenizer, messages, settings):
            raise RuntimeError("the model fell over")

    client = TestClient(build_app(long_model, smol_tokenizer, Failing(), NAME))
    body = {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 500 and r.json()["error"]["message"] == "generation failed: the model fell over"
    r = client.post("/v1/chat/completions", json={**body, "stream": True})
    assert r.status_code == 200 and "generation failed: the model fell over" in r.text


NUMBER_FIELDS = {  # field: (bad numbers, whether NaN / infinities are bad too)
    "max_tokens": [0, -5, 1.5, 10**30],
    "max_completion_tokens": [0, -1, 2.5],
    "temperature": [-0.1, 2.5, 1e308],
    "top_p": [0, -1, 1.01],
    "n": [0, 2, -3],
    "seed": [-1, 2**32, 2**70, 0.5],
}
OTHER_FIELDS = {
    "stream": ["sometimes", 2, [True]],
    "stop": [5, ["a", "b", "c", "d", "e"], [""], [1]],
    "logprobs": [True, "x"],
    "messages": [[], "hi", [{"role": "user"}], [{"role": "robot", "content": "x"}]],
}


def _bad_fields():
    from hypothesis import strategies as st

    words = st.text("abcdefghij", min_size=1, max_size=6)
    numbers = st.sampled_from(sorted(NUMBER_FIELDS)).flatmap(lambda f: st.tuples(
        st.just(f), st.sampled_from(NUMBER_FIELDS[f]) | words | st.sampled_from(["NaN", "Infinity", "-Infinity"])))
    others = st.sampled_from(sorted(OTHER_FIELDS)).flatmap(lambda f: st.tuples(st.just(f),
                                                                                 st.sampled_from(OTHER_FIELDS[f])))
    return numbers | others


def test_every_field_of_a_request_is_validated_with_a_400_naming_it(long_model, smol_tokenizer):
    """Generated bad values for each field: a 400 in OpenAI's error format with ``param`` = the field,
    and nothing generated."""
    from hypothesis import given, settings
    from starlette.testclient import TestClient

    class Refusing(ChatInferenceHandler):
        def stream_chat(self, model, tokenizer, messages, settings):
            raise AssertionError("a refused request reached the model")

    client = TestClient(build_app(long_model, smol_tokenizer, Refusing(), NAME))

    @settings(max_examples=int(os.environ.get("TUNESMITH_HYPOTHESIS_EXAMPLES", "80")), deadline=None,
              derandomize=True)
    @given(_bad_fields())
    def check(field_value):
        field, value = field_value
        body = {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        text = json.dumps({**body, field: value})
        if value in ("NaN", "Infinity", "-Infinity"):  # JSON as JavaScript writes it, not the string
            text = text.replace(f'"{value}"', value)
        r = client.post("/v1/chat/completions", content=text, headers={"content-type": "application/json"})
        assert r.status_code == 400, (field, value, r.text)
        error = r.json()["error"]
        assert error["param"] == field and error["message"].startswith(field), (field, value, error)

    check()
