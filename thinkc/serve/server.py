"""Load a model the way `thinkc infer` does (thinkc.infer.run.prepare: model, tokenizer, cache
policy, prompt layout, gist spec), put a LiveEngine over a KV pool under an engine thread, and run
the app on uvicorn.

Shutdown (SIGINT / SIGTERM): the listening socket closes, rows in flight keep decoding for up to
`shutdown_timeout_s`, then the rest are cancelled; every reply in flight ends complete (a stream
with its last chunk and `data: [DONE]`), then the process exits 0."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from thinkc.errors import ThinkcError


@dataclass
class ServeOptions:
    method: str = "lightthinker"
    model: str | None = None
    gist_config: str | None = None
    budget: object = None  # h2o & co: keys per row or a share
    window: int | None = None
    device: str = "cpu"
    dtype: str | None = None
    kv_budget: int | None = None  # KV tokens in the pool; None: the device's default
    page_size: int = 16
    pool_attention: str | None = None
    compile: bool = False
    max_rows: int = 64
    max_model_len: int | None = None
    served_model_name: str | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    host: str = "127.0.0.1"
    port: int = 8000
    shutdown_timeout_s: float = 30.0
    log_level: str = "warning"


def default_pool(model, opts: ServeOptions, max_len: int) -> int:
    """--kv-budget's default: on CUDA what fits beside the weights (thinkc infer's default); elsewhere
    room for a quarter of the rows at their longest (at least one)."""
    from thinkc.infer.pool import default_kv_budget

    budget = default_kv_budget(model, opts.page_size)
    if budget is None:
        budget = max(1, opts.max_rows // 4) * (max_len + 64)
    return budget


def build_service(opts: ServeOptions):
    """(Service, summary line) for these options; the engine thread is not started yet."""
    from thinkc.gist.layout import THINK_CLOSE
    from thinkc.infer.live import LiveEngine
    from thinkc.infer.run import eos_ids, prepare
    from thinkc.serve.driver import EngineDriver
    from thinkc.serve.reasoning import THINK_END
    from thinkc.serve.service import Service

    model, tok, policy, build, label = prepare(opts.method, opts.model, opts.gist_config, opts.budget, opts.window,
                                               opts.device, opts.dtype)
    probe = build({"question": "probe"})
    if not isinstance(probe, list):
        raise ThinkcError(f"{label}'s gist layout compresses the prompt (aug / recover): thinkc serve does not "
                          "serve it yet; use thinkc infer")
    limit = getattr(model.config, "max_position_embeddings", None) or 4096
    max_len = int(opts.max_model_len or min(limit, 4096))
    if max_len < 2:
        raise ThinkcError(f"--max-model-len {max_len}: give at least 2 tokens")
    kv_budget = int(opts.kv_budget or default_pool(model, opts, max_len))
    close = tok.encode(THINK_END, add_special_tokens=False)
    force = tok.encode(THINK_CLOSE, add_special_tokens=False)

    def make_engine():
        return LiveEngine(model, policy, slots=opts.max_rows, max_len=max_len, kv_budget=kv_budget,
                          eos_ids=eos_ids(tok), think_close=close, force_close=force, page_size=opts.page_size,
                          attention=opts.pool_attention, compile=opts.compile)

    driver = EngineDriver(make_engine)
    name = opts.served_model_name or label
    service = Service(driver, tok, build, name, str(opts.model or label), opts.temperature, opts.top_p)
    pages = driver.engine.cache.pages
    line = (f"thinkc serve: {name} ({opts.method}) on {opts.device}, up to {opts.max_rows} rows, "
            f"KV pool {pages.n_pages * pages.page_size:,} tokens ({pages.n_pages} pages of {pages.page_size}), "
            f"max model len {max_len}")
    return service, line


def run(opts: ServeOptions, on_ready=None, on_stopped=None) -> None:
    """Serve until SIGINT / SIGTERM (uvicorn then re-raises the signal: the exit status is the
    signal's, after the drain)."""
    import uvicorn

    from thinkc.serve.app import create_app

    service, line = build_service(opts)
    app = create_app(service, opts.shutdown_timeout_s, on_stopped)
    config = uvicorn.Config(app, host=opts.host, port=opts.port, log_level=opts.log_level,
                            timeout_graceful_shutdown=int(opts.shutdown_timeout_s) + 10, access_log=False)

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            service.driver.begin_drain(opts.shutdown_timeout_s)  # rows in flight end cleanly by the deadline
            super().handle_exit(sig, frame)

    if on_ready is not None:
        on_ready(line)
    logging.getLogger("thinkc.serve").setLevel(logging.INFO)
    server = _Server(config)
    server.run()
    if not server.started:
        raise ThinkcError(f"could not listen on {opts.host}:{opts.port} (in use, or not an address of this "
                          "machine): choose another --host / --port")
