"""The engine thread: one thread owns the LiveEngine and runs its steps; requests reach it through a
thread-safe inbox and their tokens go back to each request's asyncio queue
(loop.call_soon_threadsafe), so the event loop never waits on the model and the engine never waits
on a client. Nothing is decoded one request at a time: every request in the inbox joins the
running batch before the next step.

Shutdown drains: new requests are refused (503), rows in flight run to their end until the
deadline, then the rest are cancelled (their replies end with finish_reason "abort", complete).
An exception inside a step fails the rows in flight (500) and the thread starts a fresh engine."""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from thinkc.infer.live import LiveEngine, RowRequest
from thinkc.serve.protocol import OpenAIError

log = logging.getLogger("thinkc.serve")


@dataclass
class Job:
    """One request on its way through the engine; events go to `queue` on `loop`:
    ("tokens", [ids]), ("done", info dict) or ("error", OpenAIError)."""

    prompt: list[int]
    req: RowRequest
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    item: int | None = None
    cancelled: bool = False

    def push(self, event: tuple) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the loop is closed (the server stopped): nobody is listening
            pass


@dataclass
class Counters:
    """Monotonic totals, read by /metrics."""

    requests: dict = field(default_factory=dict)  # by finish reason
    prompt_tokens: int = 0
    generation_tokens: int = 0
    reasoning_tokens: int = 0
    compressions: int = 0
    steps: int = 0
    errors: int = 0


class EngineDriver:
    def __init__(self, make_engine: Callable[[], LiveEngine], tps_window_s: float = 10.0):
        self.make_engine = make_engine
        self.engine = make_engine()
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.jobs: dict[int, Job] = {}
        self.draining = False
        self.deadline: float | None = None
        self.counters = Counters()
        self.snapshot: dict = {}
        self._rate: deque = deque()
        self._window = tps_window_s
        self._base_tokens = 0  # tokens of engines replaced after an error
        self.thread = threading.Thread(target=self._main, name="thinkc-engine", daemon=True)
        self._snap()

    # ---- called from the event loop --------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def check(self, prompt_len: int, max_tokens: int | None) -> int:
        """The request's generation limit; an OpenAIError when it cannot run here."""
        e = self.engine
        if prompt_len >= e.max_len:
            raise OpenAIError(f"This model's maximum context length is {e.max_len} tokens; the prompt has "
                              f"{prompt_len} tokens", 400, "messages", code="context_length_exceeded")
        room = e.pool_pages() * e.cache.pages.page_size - prompt_len - e.Wb - 1  # what a row may add to the pool
        if max_tokens is None:  # what is left of the context, as far as the pool holds it
            max_tokens = min(e.max_len - prompt_len, room)
            if max_tokens < 1:
                raise OpenAIError(f"the {prompt_len}-token prompt fills the whole KV pool (thinkc serve --kv-budget)",
                                  400, "messages", code="kv_budget_exceeded")
        if prompt_len + max_tokens > e.max_len:
            raise OpenAIError(f"This model's maximum context length is {e.max_len} tokens; the request asks "
                              f"for {prompt_len + max_tokens} ({prompt_len} in the prompt, {max_tokens} to "
                              "generate): lower max_tokens", 400, "max_tokens", code="context_length_exceeded")
        need = e.pages_needed(prompt_len, max_tokens)
        if need > e.pool_pages():
            ps = e.cache.pages.page_size
            raise OpenAIError(f"the request may hold {need * ps} KV tokens ({prompt_len} prompt + {max_tokens} "
                              f"max_tokens), more than the whole KV pool ({e.pool_pages() * ps}; thinkc serve "
                              "--kv-budget): lower max_tokens", 400, "max_tokens", code="kv_budget_exceeded")
        return max_tokens

    def submit(self, job: Job) -> None:
        if self.draining or not self.thread.is_alive():
            raise OpenAIError("the server is shutting down", 503, type="service_unavailable")
        self.inbox.put(("add", job))

    def cancel(self, job: Job) -> None:
        """The client went away: free the row now (its pages return before the next step)."""
        if not job.cancelled:
            job.cancelled = True
            self.inbox.put(("cancel", job))

    def begin_drain(self, timeout_s: float) -> None:
        """Refuse new requests; rows in flight run for up to timeout_s more, then are cancelled."""
        if not self.draining:
            self.draining = True
            self.inbox.put(("drain", time.monotonic() + timeout_s))

    def shutdown(self, timeout_s: float) -> None:
        """begin_drain, then wait for the engine thread to stop."""
        self.begin_drain(timeout_s)
        if self.thread.is_alive():
            self.thread.join(timeout_s + 60)

    # ---- the engine thread -----------------------------------------------------------------------
    def _main(self) -> None:
        while True:
            try:
                with self.engine.session():
                    self._loop()
                    return
            except Exception as exc:  # an engine bug: fail the rows in flight, carry on with a fresh engine
                log.exception("engine step failed")
                self.counters.errors += 1
                err = OpenAIError(f"engine error: {type(exc).__name__}: {exc}", 500, type="internal_error")
                for job in self.jobs.values():
                    job.push(("error", err))
                self.jobs.clear()
                self._base_tokens += self.engine.generated
                self.engine = self.make_engine()

    def _loop(self) -> None:
        e = self.engine
        while True:
            self._take_inbox(block=not e.busy())
            if self.deadline is not None:
                if not e.busy():
                    return
                if time.monotonic() > self.deadline:
                    for job in list(self.jobs.values()):
                        e.cancel(job.item, "abort")
                    self._deliver()
                    continue
            if e.busy():
                for item, tokens in e.step():
                    self.jobs[item].push(("tokens", tokens))
                self.counters.steps += 1
                self._deliver()
            self._snap()

    def _take_inbox(self, block: bool) -> None:
        try:
            msg = self.inbox.get(timeout=0.25) if block else self.inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(*msg)
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, kind: str, arg) -> None:
        e = self.engine
        if kind == "add":
            if arg.cancelled:  # its client left before it reached the engine
                self.counters.requests["abort"] = self.counters.requests.get("abort", 0) + 1
                return
            arg.item = e.add(arg.prompt, arg.req)
            self.jobs[arg.item] = arg
            self.counters.prompt_tokens += len(arg.prompt)
        elif kind == "cancel":
            if arg.item is not None and self.jobs.get(arg.item) is arg:  # (item numbers restart with an engine)
                e.cancel(arg.item, "abort")
                self._deliver()
        elif kind == "drain":
            self.deadline = arg
        self._snap()

    def _deliver(self) -> None:
        """Tell each retired row's request how it ended (after /metrics shows its pages back)."""
        c = self.counters
        done = self.engine.finished()
        think = [min(len(res.tokens), len(res.tokens) if row.think_tokens is None else row.think_tokens)
                 for _, res, _, row in done]
        for (_, res, reason, _), n_think in zip(done, think):
            c.requests[reason] = c.requests.get(reason, 0) + 1
            c.compressions += res.compressions
            c.reasoning_tokens += n_think
        if done:
            self._snap()
        for (item, res, reason, row), n_think in zip(done, think):
            job = self.jobs.pop(item, None)
            if job is None:
                continue
            job.push(("done", {"tokens": res.tokens[row.sent:], "n_tokens": len(res.tokens), "reason": reason,
                               "reasoning_tokens": n_think, "peak_kv": res.peak_kv,
                               "compressions": res.compressions, "dependency": res.dependency,
                               "prompt_tokens": res.prompt_len, "wall_s": round(res.wall_s, 4)}))

    def _snap(self) -> None:
        """What /metrics reads (one dict, replaced whole: no lock needed)."""
        e = self.engine
        pages = e.cache.pages
        generated = self._base_tokens + e.generated
        now = time.monotonic()
        self._rate.append((now, generated))
        while len(self._rate) > 2 and now - self._rate[0][0] > self._window:
            self._rate.popleft()
        t0, g0 = self._rate[0]
        self.counters.generation_tokens = generated
        self.snapshot = {
            "running": sum(o is not None for o in e.owner), "waiting": len(e._queue),
            "swapped": len(e.sched.swapped), "pages_total": pages.n_pages, "pages_free": len(pages.free),
            "page_size": pages.page_size, "preemptions": e.sched.preemptions,
            "tokens_per_s": (generated - g0) / (now - t0) if now > t0 else 0.0, "draining": self.draining,
        }
