"""``tunesmith serve``: an OpenAI-compatible HTTP endpoint for one tuned model, on localhost.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions`` (``"stream": true`` sends server-sent
events, one ``chat.completion.chunk`` per piece, then ``data: [DONE]``) and ``GET /health``.
Built on FastAPI and uvicorn. One model answers one request at a time (a lock): requests that
arrive meanwhile wait their turn rather than sharing the model's memory.

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.chat.completions.create(model="my-run", messages=[{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any, Iterator, Optional

from tunesmith.data.examples import Message
from tunesmith.data.templates import model_prompt
from tunesmith.errors import ConfigError, ModelError
from tunesmith.inference.openai_protocol import (ChatCompletionRequest, StopFilter, chunk_body, completion_body,
                                                 completion_id, error_body, validation_message)
from tunesmith.models.generation import GenerationSettings

DEFAULT_MAX_NEW_TOKENS = 256  # when a request sets neither max_tokens nor max_completion_tokens
MAX_NEW_TOKENS_LIMIT = 4096  # largest budget one request may ask for


def _fastapi() -> Any:
    try:
        import importlib

        fastapi = importlib.import_module("fastapi")
        importlib.import_module("uvicorn")  # checked here so that the hint covers both
    except ImportError:
        raise ConfigError("tunesmith serve needs FastAPI and uvicorn: pip install 'tunesmith[serve]' "
                          "(or pip install fastapi uvicorn)") from None
    return fastapi


def build_app(model: Any, tokenizer: Any, handler: Any, model_name: str, *, sample: bool = False,
              default_temperature: float = 0.7, default_top_p: float = 0.9) -> Any:
    """The FastAPI application serving ``model`` under ``model_name``.

    Args:
        model, tokenizer: a loaded causal LM or encoder-decoder and its tokenizer.
        handler: answers conversations: an object with ``stream_chat(model, tokenizer, messages,
            settings)`` (``ChatInferenceHandler``).
        model_name: the id clients send as ``model`` and ``/v1/models`` lists.
        sample: sample when a request gives no temperature (default: greedy decoding).
        default_temperature, default_top_p: sampling settings used with ``sample`` when a request
            does not set them.

    Raises:
        ModelError: the model is a classifier, or the handler cannot answer conversations.
    """
    fastapi = _fastapi()
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from tunesmith.inference.handler import can_chat
    from tunesmith.inference.predict import is_classifier

    if is_classifier(model):
        raise ModelError("serve: this run is a classifier; chat completions need a language model "
                         "(use `tunesmith predict` for labels)")
    if not can_chat(handler):
        raise ModelError(f"serve: the inference handler {type(handler).__name__} has no "
                         "stream_chat(model, tokenizer, messages, settings) method, which chat needs")
    app = fastapi.FastAPI(title="tunesmith", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()
    created = int(time.time())
    encoder_decoder = getattr(model.config, "is_encoder_decoder", False)

    def error(status: int, message: str, param: Optional[str] = None, code: Optional[str] = None) -> Any:
        return JSONResponse(error_body(message, param, code), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Any, exc: Any) -> Any:
        message, param = validation_message(exc.errors())
        return error(400, message, param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Any, exc: Any) -> Any:
        message = {404: f"no route {request.method} {request.url.path}; this server has GET /v1/models and "
                        "POST /v1/chat/completions",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return error(exc.status_code, message, code="not_found" if exc.status_code == 404 else None)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list",
                "data": [{"id": model_name, "object": "model", "created": created, "owned_by": "tunesmith"}]}

    @app.post("/v1/chat/completions")
    def chat_completions(request: ChatCompletionRequest) -> Any:
        if request.model != model_name:
            return error(404, f"model: '{request.model}' is not served here; this server serves '{model_name}'",
                         "model", "model_not_found")
        problem = request.problems(MAX_NEW_TOKENS_LIMIT)
        if problem:
            return error(400, problem[1], problem[0])
        messages = [Message("system" if m.role == "developer" else m.role, m.text()) for m in request.messages]
        settings = _settings(request, sample, default_temperature, default_top_p)
        if request.stream:
            return StreamingResponse(
                _stream(lock, handler, model, tokenizer, messages, settings, request, model_name),
                media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        with lock:
            if request.seed is not None:
                _seed(request.seed)
            stop = StopFilter(request.stop_strings())
            text = ""
            pieces = handler.stream_chat(model, tokenizer, messages, settings)
            for piece in pieces:
                text += stop.feed(piece)  # keeps reading after a stop so generation ends cleanly
            text = (text + stop.finish()).strip()
        tokens, finish = _usage(pieces, stop, tokenizer, text, settings)
        prompt_tokens = getattr(pieces, "prompt_tokens", None)
        if prompt_tokens is None:  # a handler's own stream: count the prompt as rendered here
            prompt_tokens = _count_tokens(tokenizer, model_prompt(tokenizer, messages, encoder_decoder),
                                          special=encoder_decoder)
        return completion_body(completion_id(), model_name, text, finish, prompt_tokens, tokens)

    return app


def _stream(lock: threading.Lock, handler: Any, model: Any, tokenizer: Any, messages: list[Message],
            settings: GenerationSettings, request: Any, name: str) -> Iterator[str]:
    """Server-sent events of one streamed reply.

    A worker thread holds the model lock and generates the whole reply into a queue, and the
    response reads the queue: a client that hangs up leaves the worker to finish on its own, so the
    lock is always released (a generator abandoned mid-response would hold it until collected).
    """
    events: queue.Queue[Optional[str]] = queue.Queue()
    cid, start = completion_id(), int(time.time())

    def produce() -> None:
        try:
            with lock:
                if request.seed is not None:
                    _seed(request.seed)
                events.put(_event(chunk_body(cid, name, start, {"role": "assistant", "content": ""})))
                pieces = handler.stream_chat(model, tokenizer, messages, settings)
                stop = StopFilter(request.stop_strings())
                text = spaces = ""  # trailing whitespace is held back: the reply is stripped, as unstreamed
                for piece in pieces:
                    out = stop.feed(piece if text else piece.lstrip())
                    body = (spaces + out).rstrip()
                    if body:
                        spaces = (spaces + out)[len(body):]
                        text += body
                        events.put(_event(chunk_body(cid, name, start, {"content": body})))
                    else:
                        spaces += out
                tail = (spaces + stop.finish()).rstrip() if text else stop.finish().strip()
                if tail:
                    text += tail
                    events.put(_event(chunk_body(cid, name, start, {"content": tail})))
                _, finish = _usage(pieces, stop, tokenizer, text, settings)
                events.put(_event(chunk_body(cid, name, start, {}, finish)))
                events.put("data: [DONE]\n\n")
        except Exception as err:  # the status line is sent already: report the failure in the stream
            events.put(_event(error_body(f"generation failed: {err}", kind="server_error")))
        finally:
            events.put(None)

    threading.Thread(target=produce, daemon=True).start()
    while (item := events.get()) is not None:
        yield item


def _settings(request: Any, sample: bool, temperature: float, top_p: float) -> GenerationSettings:
    """Greedy for temperature 0 (or none given, unless the server samples); else nucleus sampling."""
    budget = request.max_new_tokens() or DEFAULT_MAX_NEW_TOKENS
    t = request.temperature
    do_sample = (t > 0) if t is not None else sample
    return GenerationSettings(max_new_tokens=budget, do_sample=do_sample,
                              temperature=t if t else temperature,
                              top_p=request.top_p if request.top_p is not None else top_p)


def _count_tokens(tokenizer: Any, text: str, special: bool = False) -> int:
    """Tokens of ``text`` as the tokenizer splits it."""
    return len(tokenizer(text, add_special_tokens=special)["input_ids"]) if text else 0


def _usage(pieces: Any, stop: Any, tokenizer: Any, text: str, settings: GenerationSettings) -> tuple[int, str]:
    """Completion tokens and ``finish_reason`` (``stop``: EOS or a stop string; ``length``: the budget ran out).

    ``ChatInferenceHandler`` streams count the generated tokens (after a stop string too: generation
    runs on to EOS or the budget); a handler whose stream does not count is measured by
    re-tokenizing the reply, and ``length`` then means the reply is as long as the budget.
    """
    counted = getattr(pieces, "new_tokens", None)
    if counted is not None:
        return counted, "stop" if stop.stopped or pieces.hit_eos else "length"
    tokens = _count_tokens(tokenizer, text)
    return tokens, "length" if not stop.stopped and tokens >= settings.max_new_tokens else "stop"


def _seed(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def _event(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body)}\n\n"


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run ``app`` with uvicorn until interrupted."""
    _fastapi()
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level)
