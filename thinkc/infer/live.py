"""The decode engine fed while it runs (thinkc serve): requests join the running batch as they arrive,
each with its own generation limit, sampling and thinking budget, and leave it at once when
cancelled (their pages go back to the pool before the next step).

    engine = LiveEngine(model, policy, slots=64, max_len=4096, kv_budget=65536, eos_ids=[...])
    with engine.session():                       # the run's contexts (attention scores, pool reads)
        item = engine.add(prompt_ids, RowRequest(max_tokens=256))
        while engine.busy():
            for item, new_tokens in engine.step():   # tokens each row produced since the last step
                ...
            # engine.finished() -> [(item, DecodeResult, finish reason)]

Everything here runs on one thread (the serve driver's engine thread). It reuses DecodeEngine's
scheduling, steps and retirement (`_schedule`, `_decode_step`, `_retire`) unchanged; the hooks are
  * an open-ended queue of prompts keyed by a growing item number instead of one run's list;
  * `_choose` per row: greedy or the row's own temperature / top-p / seeded generator (the engine's
    own sampling is set non-greedy so that every path hands `_choose` exactly the rows that emit),
    and forced tokens (the end-of-thinking tag once a row's thinking budget is spent);
  * `end_row`: a row stops now (its limit, a stop string, a client gone): it is marked finished as
    if its last token were an EOS and retired at once, which returns its pages.
Greedy rows give the tokens of DecodeEngine.run (tests/test_serve*.py check against it)."""
from __future__ import annotations

import time
from collections import deque
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch

from thinkc.infer.engine import DecodeEngine
from thinkc.infer.gistpath import is_gist_fast
from thinkc.infer.plain import is_plain
from thinkc.infer.pool import pages_for
from thinkc.infer.sampling import SamplingConfig, choose_tokens, make_generator


@dataclass
class RowRequest:
    """What one request asks of its row."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    thinking_budget: int | None = None  # tokens of thinking before the end-of-thinking tag is forced


@dataclass
class LiveRow:
    req: RowRequest
    prompt_len: int
    gen: torch.Generator | None
    sent: int = 0  # tokens handed out by step()
    emitted: int = 0  # tokens chosen so far (forced ones included)
    recent: list = field(default_factory=list)
    forced: list = field(default_factory=list)  # tokens still to force, the next first
    think_tokens: int | None = None  # tokens up to the end of the end-of-thinking tag, once written
    reason: str | None = None  # why end_row stopped it


class LiveEngine(DecodeEngine):
    """A DecodeEngine over a KV pool whose prompts arrive while it decodes (see the module doc)."""

    def __init__(self, model, policy, *, slots: int, max_len: int, kv_budget: int, eos_ids=(),
                 think_close: list[int] = (), force_close: list[int] = (), **kw):
        super().__init__(model, policy, slots=slots, max_prompt=max_len, max_new_tokens=max_len, eos_ids=eos_ids,
                         sampling=SamplingConfig(temperature=1.0), kv_budget=kv_budget, **kw)
        self.max_len = int(max_len)
        self.think_close, self.force_close = list(think_close), list(force_close or think_close)
        self._prompts, self._indices, self._pmeta, self._force = {}, {}, {}, None
        self._out, self._meta = {}, {}
        self._queue = deque()
        self.plain = self.allow_plain and is_plain(self, [None])
        self.gistfast = self.allow_plain and not self.plain and is_gist_fast(self, [None])
        self.live: dict[int, LiveRow] = {}
        self._done: list[tuple] = []
        self._next_item = 0
        self.t0 = time.perf_counter()
        self.generated = 0  # tokens handed out, all rows, since start

    # ---- the run ---------------------------------------------------------------------------------
    @contextmanager
    def session(self):
        """The contexts DecodeEngine.run holds around its loop, held open for the server's life."""
        from thinkc.infer.attention import pool_attention
        from thinkc.infer.scores import scored_attention

        ctx = scored_attention(self.model) if self.policy.needs_attention else nullcontext()
        with torch.no_grad(), ctx as sink, pool_attention(self):
            self.sink = sink
            try:
                yield self
            finally:
                self.sink = None

    def pool_pages(self) -> int:
        return self.cache.pages.n_pages

    def pages_needed(self, prompt_len: int, max_tokens: int) -> int:
        """Pages a row of this prompt and limit may hold at its longest (a gist block included)."""
        return pages_for(prompt_len + max_tokens + self.Wb + 1, self.cache.pages.page_size)

    def add(self, prompt: list[int], req: RowRequest) -> int:
        """Queue a prompt; its item number. The caller checks its limits first (EngineDriver.check)."""
        item, self._next_item = self._next_item, self._next_item + 1
        self._prompts[item], self._indices[item], self._pmeta[item] = list(prompt), item, None
        gen = None if req.temperature <= 0 else make_generator(SamplingConfig(req.temperature, req.top_p,
                                                                              req.seed), 0)
        self.live[item] = LiveRow(req, len(prompt), gen)
        self._queue.append(item)
        return item

    def busy(self) -> bool:
        return bool(self._queue) or self._waiting() or any(o is not None for o in self.owner)

    def step(self) -> list[tuple[int, list[int]]]:
        """Admit or decode once, stop rows at their limits, retire finished rows. The new tokens of
        rows still running; finished rows are in finished()."""
        if not self._schedule(self._queue):
            self._decode_step()
            self.meter.step(self, self.t0)
            if len(self.meter.trace) > 20_000:  # a server runs for days: keep the recent steps only
                del self.meter.trace[:10_000]
        self._at_limits()
        news = self._new_tokens()
        self._retire(self._on_result)
        return news

    def finished(self) -> list[tuple[int, object, str, LiveRow]]:
        """(item, DecodeResult, finish reason, row) of rows retired since the last call."""
        out, self._done = self._done, []
        return out

    def cancel(self, item: int, reason: str = "abort") -> None:
        """Stop an item wherever it is (queued, swapped out or running); a running row's pages are
        returned now. Unknown or finished items are ignored."""
        row = self.live.get(item)
        if row is None:
            return
        row.reason = reason
        if item in self._queue:
            self._queue.remove(item)
            self._finish_unrun(item, [])
            return
        if self.sched is not None:
            for p in self.sched.swapped:
                if p.item == item:
                    self.sched.swapped.remove(p)
                    tokens = p.host.tokens if p.host is not None else p.rows["tokens"][:int(p.rows["n_gen"])].tolist()
                    self._finish_unrun(item, list(tokens))
                    return
        for s, o in enumerate(self.owner):
            if o == item:
                self.end_row(s)
                self._retire(self._on_result)
                return

    # ---- hooks -----------------------------------------------------------------------------------
    def end_row(self, s: int) -> None:
        """Slot s stops now, as if its last token had ended it; _retire collects it."""
        self._finished[s] = True
        self._left[s] = 0
        R = self.rows
        R.feed_n[s] = 0
        R.feed_ptr[s] = 0
        R.active[s] = False
        bias = getattr(self, "_bias", None)
        if bias is not None:
            bias[s] = torch.finfo(bias.dtype).min
        self.sched._live_changed()

    def _finish_unrun(self, item: int, tokens: list[int]) -> None:
        from thinkc.infer.result import DecodeResult

        res = DecodeResult(index=item, tokens=tokens, prompt_len=len(self._prompts[item]))
        self._on_result(res)
        self._out.pop(item, None)

    def _on_result(self, res) -> None:
        item = res.index
        row = self.live.pop(item)
        self._prompts.pop(item, None), self._indices.pop(item, None), self._pmeta.pop(item, None)
        self._out.pop(item, None)
        reason = row.reason or ("stop" if res.stopped_by_eos else "length")
        self.generated += len(res.tokens) - row.sent
        self._done.append((item, res, reason, row))

    def _counts(self) -> dict[int, int]:
        """Tokens generated by every running, unfinished slot."""
        slots = [s for s, o in enumerate(self.owner) if o is not None and not self._finished[s]]
        if all(s in self._host for s in slots):
            return {s: len(self._host[s].tokens) for s in slots}
        n_gen = self.rows.n_gen.tolist()
        return {s: len(self._host[s].tokens) if s in self._host else int(n_gen[s]) for s in slots}

    def _at_limits(self) -> None:
        for s, n in self._counts().items():
            if n >= self.live[self.owner[s]].req.max_tokens:
                self.live[self.owner[s]].reason = "length"
                self.end_row(s)

    def _tokens_of(self, s: int, a: int, b: int) -> list[int]:
        if s in self._host:
            return list(self._host[s].tokens[a:b])
        return self.rows.tokens[s, a:b].tolist()

    def _new_tokens(self) -> list[tuple[int, list[int]]]:
        out = []
        for s, n in self._counts().items():
            row = self.live[self.owner[s]]
            if n > row.sent:
                out.append((self.owner[s], self._tokens_of(s, row.sent, n)))
                self.generated += n - row.sent
                row.sent = n
        return out

    def _choose(self, logits: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
        """Each emitting row's token: its forced token, else argmax or its own sampling."""
        rows = [s for s, x in enumerate(live.tolist()) if x]
        out = logits.argmax(-1).cpu()
        for s in rows:
            row = self.live[self.owner[s]]
            budget = row.req.thinking_budget
            if (budget is not None and row.think_tokens is None and self.think_close and not row.forced
                    and row.emitted >= budget):  # the thinking budget is spent: the tag comes next
                row.forced = list(self.force_close)
            if row.forced:
                tok = row.forced.pop(0)
            elif row.gen is not None:
                cfg = SamplingConfig(row.req.temperature, row.req.top_p, row.req.seed)
                tok = choose_tokens(logits[s:s + 1], cfg, [row.gen])[0]
            else:
                tok = int(out[s])
            out[s] = tok
            self._note(row, tok)
        return out.to(self.device)

    def _note(self, row: LiveRow, tok: int) -> None:
        """Count a chosen token and see the end of thinking (the tag's last token)."""
        row.emitted += 1
        if row.think_tokens is not None or not self.think_close:
            return
        row.recent = (row.recent + [tok])[-len(self.think_close):]
        if row.recent == self.think_close:
            row.think_tokens = row.emitted
