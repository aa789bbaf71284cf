"""The OpenAI chat-completions wire format that ``tunesmith serve`` speaks: requests, responses, errors.

Only what a single local model can honour is accepted; anything else is refused with a 400 that
names the field (``n: only 1 choice per request is supported``), so a client never silently gets
something other than what it asked for. Unknown fields that do not change the answer (``user``,
``metadata``, ...) are ignored, as OpenAI-compatible servers commonly do.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

# Fields some clients send that this server cannot honour: refused rather than ignored.
UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "logit_bias", "audio", "modalities",
               "prediction", "web_search_options")


class TextPart(BaseModel):
    """One part of a message's content list: ``{"type": "text", "text": "..."}``."""

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """``{"role": "user", "content": "Hi"}``; content may also be a list of text parts."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart]]

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``."""

    # allow_inf_nan=False: "temperature": NaN is "not a finite number", not "less than or equal to 2".
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: Optional[int] = Field(default=None, ge=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    temperature: Optional[float] = Field(default=None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(default=None, gt=0.0, le=1.0)
    stream: bool = False
    n: int = Field(default=1, ge=1)
    stop: Optional[Union[str, list[str]]] = None
    seed: Optional[int] = Field(default=None, ge=0, le=2**32 - 1)  # numpy's seed range
    logprobs: Optional[bool] = None

    def problems(self, max_new_tokens_limit: int) -> Optional[tuple[str, str]]:
        """``(param, message)`` for the first request this server cannot honour, else None."""
        extra = self.model_extra or {}
        for name in UNSUPPORTED:
            if extra.get(name) not in (None, [], {}):
                return name, f"{name}: not supported by this server (a fine-tuned model without tool calling)"
        if self.n != 1:
            return "n", f"n: only 1 choice per request is supported, got {self.n}"
        if self.logprobs:
            return "logprobs", "logprobs: not supported by this server"
        if self.messages[-1].role != "user":
            return "messages", (f"messages: the last message must come from the user, got "
                                f"'{self.messages[-1].role}'")
        tokens = self.max_new_tokens()
        if tokens is not None and tokens > max_new_tokens_limit:
            key = "max_completion_tokens" if self.max_completion_tokens is not None else "max_tokens"
            return key, f"{key}: {tokens} is above this server's limit of {max_new_tokens_limit} new tokens"
        stops = self.stop_strings()
        if len(stops) > 4 or any(not s for s in stops):
            return "stop", "stop: give at most 4 non-empty strings"
        return None

    def max_new_tokens(self) -> Optional[int]:
        """The token budget asked for (``max_completion_tokens`` wins over ``max_tokens``), or None."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def stop_strings(self) -> list[str]:
        """``stop`` as a list (empty when not given)."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


def error_body(message: str, param: Optional[str] = None, code: Optional[str] = None,
               kind: str = "invalid_request_error") -> dict[str, Any]:
    """``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`` as OpenAI returns it."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, Optional[str]]:
    """A readable message and the first bad field from pydantic's / FastAPI's error list.

    ``[{"loc": ("body", "messages", 0, "role"), "msg": "Input should be 'user'"}]`` ->
    ``("messages.0.role: Input should be 'user'", "messages")``.
    """
    parts, param = [], None
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            return "the request body is not valid JSON", None
        if err.get("type") == "missing" and not loc:
            return "the request needs a JSON body", None
        param = param or (loc[0] if loc else None)
        parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request", param


def completion_id() -> str:
    """A fresh ``chatcmpl-...`` id for one completion."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def completion_body(cid: str, model: str, text: str, finish_reason: str, prompt_tokens: int,
                    completion_tokens: int) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` object."""
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                     "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def chunk_body(cid: str, model: str, created: int, delta: dict[str, Any],
               finish_reason: Optional[str] = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a streamed reply."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}


class StopFilter:
    """Cuts streamed text at the first stop string, holding back text that may begin one.

    >>> f = StopFilter(["\\n\\n"])
    >>> f.feed("Hello\\n"), f.feed("\\nmore"), f.stopped
    ('Hello', '', True)
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The part of ``piece`` (with held-back text) that is safe to send now."""
        if self.stopped:
            return ""
        self.pending += piece
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self.pending = self.pending[:cut], ""
            return out
        # Hold back the longest tail that is a prefix of some stop string.
        hold = max((k for s in self.stops for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0)
        out = self.pending[:len(self.pending) - hold]
        self.pending = self.pending[len(out):]
        return out

    def finish(self) -> str:
        """Whatever is still held back once generation has ended."""
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out
