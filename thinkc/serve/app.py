"""The ASGI app (FastAPI): OpenAI's /v1/chat/completions, /v1/completions and /v1/models, plus
/health and /metrics. Every error is OpenAI's JSON with a 4xx/5xx status, FastAPI's 422 included
(it becomes a 400 naming the field); the server keeps serving after any of them."""
from __future__ import annotations

import asyncio
import json
from contextlib import aclosing, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from thinkc.serve import metrics
from thinkc.serve.protocol import (ChatCompletionRequest, CompletionRequest, OpenAIError, chat_chunk, chat_message,
                                   chat_response, completion_chunk, completion_response, error_body, model_list,
                                   new_id, usage, validation_error)
from thinkc.serve.reasoning import ReasoningSplitter, TextStream, split_reasoning
from thinkc.serve.service import Service


def create_app(service: Service, shutdown_timeout_s: float = 30.0, on_stopped=None) -> FastAPI:
    """The app over a service whose engine thread starts with the app and drains when it stops
    (`on_stopped(counters)` after that)."""
    @asynccontextmanager
    async def lifespan(app):
        service.driver.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, service.driver.shutdown, shutdown_timeout_s)
        if on_stopped is not None:
            on_stopped(service.driver.counters)

    app = FastAPI(title="thinkc serve", lifespan=lifespan)
    registry = metrics.make_registry(service.driver)
    _errors(app)

    @app.get("/health")
    async def health():
        if service.driver.draining or not service.driver.thread.is_alive():
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return {"status": "ok"}

    @app.get("/metrics")
    async def get_metrics():
        return Response(metrics.render(registry), media_type=metrics.CONTENT_TYPE)

    @app.get("/v1/models")
    async def models():
        return model_list(service.model_name, service.driver.engine.max_len, service.model_root)

    @app.post("/v1/chat/completions")
    async def chat(req: ChatCompletionRequest, request: Request):
        req.check()
        service.check_model(req.model)
        prompt = service.chat_prompt(req)
        return await _run(service, req, prompt, request, chat=True)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        req.check()
        service.check_model(req.model)
        prompt = service.completion_prompt(req)
        return await _run(service, req, prompt, request, chat=False)

    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def openai_error(request, exc: OpenAIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        err = validation_error(list(exc.errors()))
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind, None, str(exc.status_code)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal(request, exc: Exception):
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}", "internal_error", None, "500"),
                            status_code=500)


async def _run(service: Service, req, prompt: list[int], request: Request, chat: bool):
    row = service.row_request(req, len(prompt))
    stops = req.stops()
    rid = new_id("chatcmpl" if chat else "cmpl")
    if req.stream:  # the row starts inside the stream, so a client gone before it starts costs nothing
        if service.driver.draining:
            raise OpenAIError("the server is shutting down", 503, type="service_unavailable")
        gen = _chat_stream if chat else _completion_stream
        start = lambda: service.start(prompt, row)  # noqa: E731
        return StreamingResponse(gen(service, start, req, rid, stops), media_type="text/event-stream")
    job = service.start(prompt, row)
    text, info = await _collect(service, job, stops, request)
    use = _usage(info, chat)
    if chat:
        reasoning, content = split_reasoning(text)
        return chat_response(rid, req.model, chat_message(reasoning, content), info["reason"], use)
    return completion_response(rid, req.model, text, info["reason"], use)


def _usage(info: dict, chat: bool) -> dict:
    return usage(info["prompt_tokens"], info["n_tokens"], info["reasoning_tokens"] if chat else None,
                 {k: info[k] for k in ("peak_kv", "compressions", "dependency", "wall_s")})


async def _collect(service: Service, job, stops: list[str], request: Request) -> tuple[str, dict]:
    ts = TextStream(service.tokenizer, stops)
    text = []
    async for kind, value in service.events(job, request.is_disconnected):
        text.append(ts.add(value) if kind == "tokens" else ts.add(value["tokens"]))
        if kind == "done":
            text.append(ts.finish())
            return "".join(text), _reason(value, ts)
        if ts.stopped:
            service.driver.cancel(job)  # the row stops at once; its "done" still comes
    raise OpenAIError("the client went away", 499)


def _reason(info: dict, ts: TextStream) -> dict:
    if ts.stopped:
        info = dict(info, reason="stop")
    return info


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _text_events(service: Service, start, ts: TextStream):
    """(text piece, None) per engine event of a new job, then (last piece, finish info); a stop string
    met cancels the job (its pages go back at once)."""
    job = start()
    async for kind, value in service.events(job, None):
        if kind == "done":
            yield ts.add(value["tokens"]) + ts.finish(), _reason(value, ts)
            return
        yield ts.add(value), None
        if ts.stopped:
            service.driver.cancel(job)


async def _chat_stream(service: Service, start, req, rid: str, stops: list[str]):
    ts, split = TextStream(service.tokenizer, stops), ReasoningSplitter()
    yield _sse(chat_chunk(rid, req.model, {"role": "assistant", "content": ""}))
    try:
        async with aclosing(_text_events(service, start, ts)) as events:  # closed at once on a disconnect
            async for piece, info in events:
                reasoning, content = split.feed(piece, final=info is not None)
                if reasoning:
                    yield _sse(chat_chunk(rid, req.model, {"reasoning": reasoning, "reasoning_content": reasoning}))
                if content:
                    yield _sse(chat_chunk(rid, req.model, {"content": content}))
                if info is not None:
                    yield _sse(chat_chunk(rid, req.model, {}, info["reason"]))
                    if req.include_usage():
                        yield _sse(chat_chunk(rid, req.model, None, use=_usage(info, True)))
    except OpenAIError as e:
        yield _sse(e.body())
    yield "data: [DONE]\n\n"


async def _completion_stream(service: Service, start, req, rid: str, stops: list[str]):
    ts = TextStream(service.tokenizer, stops)
    try:
        async with aclosing(_text_events(service, start, ts)) as events:
            async for piece, info in events:
                if piece:
                    yield _sse(completion_chunk(rid, req.model, piece))
                if info is not None:
                    yield _sse(completion_chunk(rid, req.model, "", info["reason"]))
                    if req.include_usage():
                        yield _sse(completion_chunk(rid, req.model, None, use=_usage(info, False)))
    except OpenAIError as e:
        yield _sse(e.body())
    yield "data: [DONE]\n\n"
