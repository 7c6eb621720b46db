"""`thinkc serve`: an OpenAI-compatible HTTP server (chat and text completions, streaming, /v1/models,
/health, /metrics) over the continuous-batching engine and its KV pool (docs/serving.md)."""
from __future__ import annotations

from typing import Optional

import typer

from thinkc.errors import ThinkcError


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def _check_listen(host: str, port: int) -> None:
    """One clear line before the model loads when the address cannot be listened on."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ThinkcError(f"--host {host!r}: not an address or a name this machine resolves") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise ThinkcError(f"cannot listen on {host}:{port} ({e.strerror}): choose another --port") from None


def serve(
    model: Optional[str] = typer.Option(None, "--model", help="Local HF folder, 'smollm2', or a shipped tiny "
                                                              "checkpoint (default: tiny-lightthinker for gist "
                                                              "methods, else tiny-sft)."),
    method: str = typer.Option("lightthinker", "--method", "-m", help="Cache policy: vanilla | lightthinker | anllm "
                                                                      "| h2o | sepllm | streamingllm | snapkv | rkv."),
    gist_config: Optional[str] = typer.Option(None, "--gist-config", help="Gist layout preset or file (default: the "
                                                                          "one saved with the model)."),
    kv_budget: Optional[int] = typer.Option(None, "--kv-budget", min=1,
                                            help="KV tokens in the pool all rows share (pages of --page-size). "
                                                 "Requests are admitted while pages are free; when it runs dry the "
                                                 "youngest row is swapped to host memory. Default: on CUDA 90% of the "
                                                 "free memory; on CPU room for a quarter of --max-rows at "
                                                 "--max-model-len."),
    max_rows: int = typer.Option(64, "--max-rows", min=1, help="Most rows decoding at once (continuous batching)."),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", min=2,
                                                help="Prompt + generated tokens per request (default: the model's "
                                                     "positions, at most 4096). max_tokens defaults to what is left."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    served_model_name: Optional[str] = typer.Option(None, "--served-model-name",
                                                    help="The model name clients send (default: the model's label, "
                                                         "e.g. tiny-lightthinker)."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, max=2.0,
                                      help="Temperature of requests that set none (0 = greedy, as thinkc infer)."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0, help="top_p of requests that set none."),
    budget: Optional[str] = typer.Option(None, "--budget", help="KV budget per row for h2o / sepllm / streamingllm / "
                                                                "snapkv / rkv (as thinkc infer --budget)."),
    window: Optional[int] = typer.Option(None, "--window", min=1,
                                         help="Recent window for h2o / sepllm / snapkv / rkv."),
    page_size: Optional[int] = typer.Option(None, "--page-size", min=1, help="Tokens per KV page (default: 128 on "
                                                                             "CUDA, 16 on CPU)."),
    pool_attention: Optional[str] = typer.Option(None, "--pool-attention", help="flex | kernel | gather (as thinkc "
                                                                                "infer)."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the decode step "
                                                                                "(default: on for CUDA)."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, bfloat16 or float16 (default: bfloat16 on "
                                                              "CUDA, float32 on CPU)."),
    shutdown_timeout: float = typer.Option(30.0, "--shutdown-timeout", min=0.0,
                                           help="On SIGINT / SIGTERM: seconds rows in flight may still decode before "
                                                "they are cancelled (their replies end with finish_reason abort)."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn's log level: debug, info, warning, error."),
):
    """Serve a model over OpenAI's API (POST /v1/chat/completions and /v1/completions, streaming or not;
    GET /v1/models, /health, /metrics). Requests join the running batch as they arrive; the thinking
    comes back in the message's `reasoning` field and the answer in `content`; usage.thinkc holds the
    row's peak KV and gist compressions. A request's `thinking_token_budget` forces the end of
    thinking after that many tokens. Any OpenAI client works: base_url http://HOST:PORT/v1 and any
    api_key. Stop with Ctrl-C (rows in flight finish first, up to --shutdown-timeout)."""
    from thinkc.cli.infer import _engine_options, _parse_budget

    _check_inputs(method, log_level)
    device, page_size, dtype, compile = _engine_options(device, page_size, dtype, compile, pool_attention, kv_budget)
    _check_listen(host, port)
    from thinkc.serve.server import ServeOptions

    _run(ServeOptions(method=method, model=model, gist_config=gist_config, budget=_parse_budget(budget),
                      window=window, device=device, dtype=dtype, kv_budget=kv_budget, page_size=page_size,
                      pool_attention=pool_attention, compile=compile, max_rows=max_rows,
                      max_model_len=max_model_len, served_model_name=served_model_name, temperature=temperature,
                      top_p=top_p, host=host, port=port, shutdown_timeout_s=shutdown_timeout, log_level=log_level))


def _check_inputs(method: str, log_level: str) -> None:
    """One-line errors before anything loads: the method, the log level, the serve extra."""
    from thinkc.infer.policies import METHODS

    if method not in METHODS:
        raise ThinkcError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
        raise ThinkcError(f"--log-level {log_level!r}: choose debug, info, warning or error")
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ThinkcError(f"thinkc serve needs {e.name}: pip install 'thinkc[serve]'") from None


def _run(opts) -> None:
    """Serve until SIGINT / SIGTERM, with the ready and stopped lines on stderr."""
    from rich.console import Console

    from thinkc.serve.server import run

    console = Console(stderr=True)

    def ready(line: str) -> None:
        console.print(f"{line}\nlistening on http://{opts.host}:{opts.port}/v1 (Ctrl-C stops)", highlight=False,
                      soft_wrap=True)

    def stopped(c) -> None:
        done = ", ".join(f"{n} {reason}" for reason, n in sorted(c.requests.items())) or "none"
        console.print(f"thinkc serve: stopped cleanly; requests finished: {done}", highlight=False, soft_wrap=True)

    run(opts, on_ready=ready, on_stopped=stopped)
