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
from typing import Any, Optional

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

    def error(status: int, message: str, param: Optional[str] = None, code: Optional[str] = None,
              kind: str = "invalid_request_error") -> Any:
        return JSONResponse(error_body(message, param, code, kind), status_code=status)

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

    async def chat_completions(request: ChatCompletionRequest, raw: Any) -> Any:
        if request.model != model_name:
            return error(404, f"model: '{request.model}' is not served here; this server serves '{model_name}'",
                         "model", "model_not_found")
        problem = request.problems(MAX_NEW_TOKENS_LIMIT)
        if problem:
            return error(400, problem[1], problem[0])
        messages = [Message("system" if m.role == "developer" else m.role, m.text()) for m in request.messages]
        prompt_tokens = _count_tokens(tokenizer, model_prompt(tokenizer, _with_system(handler, messages),
                                                              encoder_decoder), special=encoder_decoder)
        budget, problem = fit_context(prompt_tokens, request.max_new_tokens(), _context_length(model, tokenizer),
                                      DEFAULT_MAX_NEW_TOKENS, encoder_decoder)
        if problem:
            return error(400, problem[1], problem[0], "context_length_exceeded")
        cancel = threading.Event()  # set when the client goes away: generation stops at the next token
        settings = _settings(request, sample, default_temperature, default_top_p, budget, cancel)
        reply = _Reply(lock, cancel)
        reply.start(handler, model, tokenizer, messages, settings, request)
        if request.stream:
            return StreamingResponse(_sse(reply, model_name), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        pieces: list[str] = []
        try:
            while (item := await reply.next(raw)) is not None:
                kind, value = item
                if kind == "error":
                    return error(500, f"generation failed: {value}", kind="server_error")
                if kind == "piece":
                    pieces.append(value)
                elif kind == "end":
                    tokens, finish, counted_prompt = value
                    text = "".join(pieces).strip()
                    return completion_body(completion_id(), model_name, text, finish,
                                           prompt_tokens if counted_prompt is None else counted_prompt, tokens)
        finally:
            cancel.set()  # the client went away (or the reply is complete): free the model
        return error(499, "the client closed the connection")

    # FastAPI reads the parameter types from the annotations; fastapi is imported lazily, so its
    # Request class is set here rather than named in the signature.
    chat_completions.__annotations__.update(request=ChatCompletionRequest, raw=fastapi.Request)
    app.post("/v1/chat/completions")(chat_completions)
    return app


def _with_system(handler: Any, messages: list[Message]) -> list[Message]:
    """The conversation as the handler renders it: its system prompt first when the request has none."""
    system = getattr(handler, "system_prompt", None)
    if isinstance(system, str) and system and not any(m.role == "system" for m in messages):
        return [Message("system", system), *messages]
    return messages


def _context_length(model: Any, tokenizer: Any) -> Optional[int]:
    """Tokens the model can attend to (``max_position_embeddings``); None when it has no fixed limit."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and limit > 0:
        return limit
    length = getattr(tokenizer, "model_max_length", None)
    return length if isinstance(length, int) and 0 < length < 10**7 else None


def fit_context(prompt_tokens: int, asked: Optional[int], context: Optional[int], default: int,
                encoder_decoder: bool = False) -> tuple[int, Optional[tuple[str, str]]]:
    """The new-token budget of a request, or ``(0, (param, message))`` when it cannot fit the context.

    A decoder-only model sees the prompt and the reply in one window of ``context`` tokens: an
    explicit ``max_tokens`` that does not fit is refused; without one the default budget shrinks to
    what is left. An encoder-decoder reads the prompt in its encoder, so only the prompt is checked.

    Example:
        >>> fit_context(400, None, 512, 256)
        (112, None)
        >>> fit_context(500, 100, 512, 256)[1][1]
        "messages: the prompt is 500 tokens and max_tokens asks for 100 more (600 in all), above the ..."
    """
    if context is None:
        return asked or default, None
    if prompt_tokens >= context or (encoder_decoder and prompt_tokens > context):
        return 0, ("messages", f"messages: the prompt is {prompt_tokens} tokens, and the model's context is "
                               f"{context} tokens{'' if encoder_decoder else ' (prompt and reply together)'}; "
                               "shorten the conversation")
    if encoder_decoder:
        return asked or default, None
    if asked is None:
        return min(default, context - prompt_tokens), None
    if prompt_tokens + asked > context:
        return 0, ("messages", f"messages: the prompt is {prompt_tokens} tokens and max_tokens asks for {asked} more "
                               f"({prompt_tokens + asked} in all), above the model's context of {context} tokens; "
                               "shorten the conversation or lower max_tokens")
    return asked, None


class _Reply:
    """One request's reply, generated by a worker thread that holds the model lock.

    The worker puts ``("piece", text)`` items (stop strings already cut), then ``("end", (tokens,
    finish_reason, prompt_tokens))`` or ``("error", message)``, then None. The response reads them
    without blocking the event loop; when the client goes away, ``cancel`` is set and the worker
    stops at the next token, or gives up its place in the queue for the lock, so the next request
    is not kept waiting for an answer nobody reads.
    """

    POLL_S = 0.01  # how often the response looks for new pieces
    CHECK_S = 0.1  # how often a plain (unstreamed) response asks whether its client is still there

    def __init__(self, lock: threading.Lock, cancel: threading.Event) -> None:
        self.lock = lock
        self.cancel = cancel
        self.items: queue.Queue[Optional[tuple[str, Any]]] = queue.Queue()
        self.checked = time.monotonic()

    def start(self, handler: Any, model: Any, tokenizer: Any, messages: list[Message], settings: GenerationSettings,
              request: Any) -> None:
        """Start the worker thread."""
        threading.Thread(target=self._produce, args=(handler, model, tokenizer, messages, settings, request),
                         daemon=True).start()

    async def next(self, raw: Any = None) -> Optional[tuple[str, Any]]:
        """The next item, or None at the end or once the client (``raw``, a Starlette request) has gone."""
        import asyncio

        while True:
            if raw is not None and time.monotonic() - self.checked >= self.CHECK_S:
                self.checked = time.monotonic()  # checked on a clock: pieces may arrive faster than this
                if await raw.is_disconnected():
                    self.cancel.set()
                    return None
            try:
                return self.items.get_nowait()
            except queue.Empty:
                pass
            await asyncio.sleep(self.POLL_S)

    def _produce(self, handler: Any, model: Any, tokenizer: Any, messages: list[Message],
                 settings: GenerationSettings, request: Any) -> None:
        try:
            while not self.lock.acquire(timeout=0.05):
                if self.cancel.is_set():
                    return
            try:
                if self.cancel.is_set():
                    return
                if request.seed is not None:
                    _seed(request.seed)
                stop = StopFilter(request.stop_strings())
                text = ""
                pieces = handler.stream_chat(model, tokenizer, messages, settings)
                for piece in pieces:
                    out = stop.feed(piece)  # keeps reading after a stop so generation ends cleanly
                    if out:
                        text += out
                        self.items.put(("piece", out))
                tail = stop.finish()
                if tail:
                    text += tail
                    self.items.put(("piece", tail))
                tokens, finish = _usage(pieces, stop, tokenizer, text.strip(), settings)
                self.items.put(("end", (tokens, finish, getattr(pieces, "prompt_tokens", None))))
            finally:
                self.lock.release()
        except Exception as err:  # reported to the client: a 500, or an error event in a stream
            self.items.put(("error", str(err)))
        finally:
            self.items.put(None)


async def _sse(reply: _Reply, name: str) -> Any:
    """Server-sent events of one streamed reply; leading and trailing whitespace is held back, so the
    streamed text equals the unstreamed (stripped) reply. Closing it (the client hung up) cancels
    the generation."""
    cid, start = completion_id(), int(time.time())
    try:
        yield _event(chunk_body(cid, name, start, {"role": "assistant", "content": ""}))
        text = spaces = ""
        while (item := await reply.next()) is not None:
            kind, value = item
            if kind == "error":
                yield _event(error_body(f"generation failed: {value}", kind="server_error"))
                return
            if kind == "piece":
                body = (spaces + (value if text else value.lstrip())).rstrip()
                if body:
                    spaces = (spaces + (value if text else value.lstrip()))[len(body):]
                    text += body
                    yield _event(chunk_body(cid, name, start, {"content": body}))
                else:
                    spaces += value if text else value.lstrip()
            elif kind == "end":
                yield _event(chunk_body(cid, name, start, {}, value[1]))
                yield "data: [DONE]\n\n"
    finally:
        reply.cancel.set()


def _settings(request: Any, sample: bool, temperature: float, top_p: float, budget: int,
              cancel: Optional[threading.Event] = None) -> GenerationSettings:
    """Greedy for temperature 0 (or none given, unless the server samples); else nucleus sampling."""
    t = request.temperature
    do_sample = (t > 0) if t is not None else sample
    return GenerationSettings(max_new_tokens=budget, do_sample=do_sample,
                              temperature=t if t else temperature,
                              top_p=request.top_p if request.top_p is not None else top_p, cancel=cancel)


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
