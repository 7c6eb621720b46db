"""The OpenAI wire format thinkc serve speaks: request models (pydantic), the response bodies, and
OpenAI-style errors ({"error": {"message", "type", "param", "code"}} with a 4xx/5xx status).

Requests accept the fields OpenAI and vLLM clients send; unknown fields are ignored (clients add
their own), fields thinkc does not implement are rejected when set to a value that would change
the result (n > 1, logprobs, tools, ...), never silently dropped."""
from __future__ import annotations

import time
import uuid
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class OpenAIError(Exception):
    """An error the client caused (4xx) or the server hit (5xx), sent as OpenAI's error JSON."""

    def __init__(self, message: str, status: int = 400, param: str | None = None,
                 type: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.message, self.status, self.param, self.type = message, status, param, type
        self.code = code if code is not None else str(status)

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def validation_error(errors: list[dict]) -> OpenAIError:
    """FastAPI's 422 (a field of the wrong type, a missing field) as one 400 naming the field."""
    first = errors[0] if errors else {}
    loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path")]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid request")
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem(s))"
    return OpenAIError(f"{param}: {msg}" if param else msg, 400, param)


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    seed: Optional[int] = None
    stop: Optional[Union[str, list[str]]] = None
    n: int = 1
    stream: bool = False
    stream_options: Optional[dict] = None
    user: Optional[str] = None
    logprobs: Any = None
    # vLLM's per-request thinking budget: tokens of thinking before the end-of-thinking tag is forced
    thinking_token_budget: Optional[int] = Field(None, ge=0)

    def stops(self) -> list[str]:
        s = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if any(not x for x in s):
            raise OpenAIError("stop: empty stop strings are not allowed", 400, "stop")
        if len(s) > 4:
            raise OpenAIError("stop: at most 4 stop sequences", 400, "stop")
        return s

    def check_common(self) -> None:
        if self.n != 1:
            raise OpenAIError(f"n: only n=1 is supported (got {self.n})", 400, "n")
        if self.logprobs not in (None, False):
            raise OpenAIError("logprobs: not supported by thinkc serve", 400, "logprobs")

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[dict], None] = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for p in self.content:
            if p.get("type") != "text" or not isinstance(p.get("text"), str):
                raise OpenAIError("messages: only text content parts are supported", 400, "messages")
            parts.append(p["text"])
        return "".join(parts)


class ChatCompletionRequest(_Req):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    tools: Optional[list] = None
    top_logprobs: Optional[int] = None

    def limit(self) -> Optional[int]:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def check(self) -> None:
        self.check_common()
        if self.tools:
            raise OpenAIError("tools: tool calls are not supported by thinkc serve", 400, "tools")
        if self.messages[-1].role != "user":
            raise OpenAIError("messages: the last message must be the user's", 400, "messages")


class CompletionRequest(_Req):
    prompt: Union[str, list[int], list[str]]
    echo: bool = False

    def limit(self) -> Optional[int]:
        return self.max_tokens

    def check(self) -> None:
        self.check_common()
        if self.echo:
            raise OpenAIError("echo: not supported by thinkc serve", 400, "echo")
        p = self.prompt
        if isinstance(p, list) and p and isinstance(p[0], str):
            if len(p) != 1:
                raise OpenAIError("prompt: one prompt per request (a list of several is not supported)", 400,
                                  "prompt")
            self.prompt = p[0]
        if not self.prompt:
            raise OpenAIError("prompt: empty", 400, "prompt")


# ---- responses ----------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int | None, extras: dict) -> dict:
    """OpenAI's usage, reasoning tokens included, and thinkc's own measurements under `thinkc`."""
    out = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
           "total_tokens": prompt_tokens + completion_tokens, "thinkc": extras}
    if reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return out


def chat_message(reasoning: str | None, content: str | None) -> dict:
    """The assistant message: the thinking in `reasoning` (vLLM's field) and `reasoning_content`
    (older clients), the answer in `content`."""
    return {"role": "assistant", "content": content, "reasoning": reasoning, "reasoning_content": reasoning,
            "tool_calls": []}


def chat_response(rid: str, model: str, message: dict, finish: str, use: dict) -> dict:
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": use}


def chat_chunk(rid: str, model: str, delta: dict | None, finish: str | None = None,
               use: dict | None = None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
    out = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
           "choices": choices}
    if use is not None:
        out["usage"] = use
    return out


def completion_response(rid: str, model: str, text: str, finish: str, use: dict) -> dict:
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}], "usage": use}


def completion_chunk(rid: str, model: str, text: str | None, finish: str | None = None,
                     use: dict | None = None) -> dict:
    choices = [] if text is None else [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]
    out = {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model, "choices": choices}
    if use is not None:
        out["usage"] = use
    return out


def model_list(name: str, max_len: int, root: str) -> dict:
    return {"object": "list", "data": [{"id": name, "object": "model", "created": int(time.time()),
                                        "owned_by": "thinkc", "root": root, "max_model_len": max_len}]}
