"""The engine's memory scheduler over the KV pool (design.md §4; vLLM's scheduler in small): admit a
newcomer when its prompt's pages plus headroom are free, take pages for every row that feeds
before each step, return tail pages after compaction, and when the pool runs dry mid-decode preempt
the youngest row by swapping it to host memory (its gist KV cannot be recomputed from its tokens
alone) and resume it, oldest first, when pages free up.

A preempted row takes everything it is with it: its cache pages (SwappedKV), its device state (every
per-row tensor of Rows and Slots, the plain paths' mask row) and its host state (results so far,
generator, feed). It resumes in any free slot, so greedy output under any budget equals the
unbounded run: rows never interact, and a row's state is restored bit for bit.
Without a pool (kv_budget None) every function here is a no-op.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from thinkc.errors import ThinkcError
from thinkc.infer.headroom import Headroom
from thinkc.infer.pool import PagedKVCache, pages_for


@dataclass
class Preempted:
    """One swapped-out row."""

    item: int  # index into the run's prompts
    seq: int  # admission order (resumes go oldest first)
    kv: object  # SwappedKV
    rows: dict  # Rows' per-row tensors (host copies)
    slots: dict  # Slots' per-row tensors
    host: object  # the plain / gist paths' host row, or None
    meta: dict
    left: int
    length: int
    bias: torch.Tensor | None


class Scheduler:
    """Pool bookkeeping for one DecodeEngine; `engine.cache` is a PagedKVCache."""

    def __init__(self, engine, watermark_pages: int | None = None):
        self.e = engine
        self.pool: PagedKVCache = engine.cache
        pages = self.pool.pages
        self.room = Headroom(pages.n_pages, pages.page_size, watermark=watermark_pages)
        self.seq = [0] * engine.B  # admission order of each slot's row
        self._next_seq = 0
        self.swapped: list[Preempted] = []
        self.preemptions = 0

    # ---- admission ------------------------------------------------------------------------------
    def check_prompts(self, prompts: list[list[int]]) -> None:
        e, ps = self.e, self.pool.page_size
        longest = max(map(len, prompts))
        if pages_for(longest + e.Wb + 1, ps) > self.pool.pages.n_pages:
            raise ThinkcError(f"--kv-budget {self.pool.kv_budget}: a {longest}-token prompt does not fit in the "
                              f"pool (it needs {pages_for(longest + e.Wb + 1, ps) * ps} tokens); raise --kv-budget")

    def fits(self, n_tokens: int, joining: int = 0) -> bool:
        """Whether a row of n_tokens can be admitted now: its pages plus headroom are free, the
        headroom being what the running rows take net over the next page_size steps plus a watermark
        (thinkc.infer.headroom); admitting into a pool that the running rows are about to fill would
        only preempt at once (measured: 250 preemptions for 96 rows without any headroom)."""
        running = self.running() + joining  # `joining`: newcomers admitted in the same batch
        need = pages_for(n_tokens, self.pool.page_size) + self.room.pages(running)
        return need <= len(self.pool.pages.free)

    def running(self) -> int:
        return sum(o is not None for o in self.e.owner)

    def schedule(self, queue, prompts) -> bool:
        """Fill slots: a preempted row first (oldest first), then as many newcomers as the pool admits,
        growing the slots' bucket for them. False when nobody joined (the engine decodes a step)."""
        from thinkc.infer.buckets import rebucket

        e = self.e
        p = self.next_resume()
        if p is not None:
            rebucket(e, self.running() + 1)
            self.resume(self._free()[0], p)
            return True
        if self.swapped:  # a preempted row waits for pages: newcomers do not pass it
            return self._nothing_runs(self.swapped[0].length)
        take, need = [], 0
        while queue and len(take) < len(queue) and self.running() + len(take) < e.max_slots:
            n = len(prompts[queue[len(take)]])
            if not self.fits(need + n + 1, len(take)):
                break
            need += pages_for(n, self.pool.page_size) * self.pool.page_size
            take.append(queue[len(take)])
        if not take:
            return self._nothing_runs(len(prompts[queue[0]])) if queue else False
        rebucket(e, self.running() + len(take))
        slots = self._free()[:len(take)]
        take = take[:len(slots)]
        for _ in take:
            queue.popleft()
        self.admitted(slots, [prompts[i] for i in take])
        e._admit(slots, take)
        return True

    def _nothing_runs(self, tokens: int) -> bool:
        """Nobody can join now: False while rows run (they will free pages), else one clear error."""
        if self.running():
            return False
        raise ThinkcError(f"--kv-budget {self.pool.kv_budget}: a row of {tokens} tokens does not fit in the empty "
                          "pool; raise --kv-budget")

    def _free(self) -> list[int]:
        return [s for s in range(self.e.B) if self.e.owner[s] is None]

    def rows_left(self) -> None:
        """After retirements: shrink the slots' bucket when few rows are left."""
        from thinkc.infer.buckets import rebucket

        rebucket(self.e, self.running())

    def admitted(self, slots: list[int], prompts: list[list[int]]) -> None:
        """Take the prompt pages of newcomers (before their prefill)."""
        for s, p in zip(slots, prompts):
            self.seq[s], self._next_seq = self._next_seq, self._next_seq + 1
            if not self.pool.pages.ensure(s, len(p)):
                raise ThinkcError("KV pool: admitted a row without its pages (scheduler bug)")

    # ---- each step ------------------------------------------------------------------------------
    def reserve(self) -> None:
        """Pages for what every feeding row writes at the next step; preempt the youngest rows while
        the pool is short."""
        e, pages = self.e, self.pool.pages
        while True:
            need = {s: e._lengths[s] + (1 if e.stream_blocks else max(1, e._left[s]))
                    for s in range(e.B) if e.owner[s] is not None and e._left[s] > 0}
            want = sum(pages.need(s, n) for s, n in need.items())
            if want <= len(pages.free):
                for s, n in need.items():
                    pages.ensure(s, n)
                self.room.took(want)
                return
            live = [s for s in range(e.B) if e.owner[s] is not None]
            if len(live) <= 1:
                raise ThinkcError(f"--kv-budget {self.pool.kv_budget}: one row alone outgrew the pool "
                                  f"({e._lengths[live[0]] if live else 0} tokens); raise --kv-budget")
            self.preempt(max(live, key=lambda s: self.seq[s]))

    def after_step(self) -> None:
        """Return whole tail pages of rows that shrank (compaction) to the free list."""
        e, pages = self.e, self.pool.pages
        freed = 0
        for s in range(e.B):
            if e.owner[s] is not None and len(pages.owned[s]) > pages_for(e._lengths[s], pages.page_size):
                freed += pages.shrink(s, e._lengths[s])
        self.room.step(freed, self.running())

    def retired(self, slot: int) -> None:
        """A finished row's pages go back; its empty slot holds no keys (host and device lengths 0)."""
        self.pool.pages.release(slot)
        self.pool.lengths[slot] = 0
        self.e._lengths[slot] = 0

    # ---- preemption -----------------------------------------------------------------------------
    def preempt(self, s: int) -> None:
        e = self.e
        length = e._lengths[s]
        bias = getattr(e, "_bias", None)
        p = Preempted(item=e.owner[s], seq=self.seq[s], kv=self.pool.swap_out(s, length),
                      rows=_take(e.rows, s, e.B), slots=_take(e.slots, s, e.B), host=e._host.pop(s, None),
                      meta=e._meta.pop(s), left=e._left[s], length=length,
                      bias=None if bias is None else bias[s].clone())
        self.swapped.append(p)
        self.preemptions += 1
        e.owner[s] = None
        e._left[s] = 0
        e._lengths[s] = 0
        e._finished[s] = False
        e.rows.feed_n[s] = 0  # the empty slot feeds nothing
        e.rows.feed_ptr[s] = 0
        e.rows.active[s] = False
        if bias is not None:
            bias[s] = torch.finfo(bias.dtype).min
        self._live_changed()

    def next_resume(self) -> Preempted | None:
        """The oldest swapped row, when its pages plus headroom are free."""
        if not self.swapped:
            return None
        p = min(self.swapped, key=lambda x: x.seq)
        return p if self.fits(p.length + 1) else None

    def resume(self, s: int, p: Preempted) -> None:
        e = self.e
        self.swapped.remove(p)
        self.pool.swap_in(s, p.kv)
        e.slots.clear_rows(torch.tensor([s], device=e.device))
        _put(e.rows, s, p.rows)
        _put(e.slots, s, p.slots)
        if p.host is not None:
            e._host[s] = p.host
        e._meta[s] = p.meta
        e.owner[s], self.seq[s] = p.item, p.seq
        e._left[s], e._lengths[s], e._finished[s] = p.left, p.length, False
        e.hi = max(e.hi, p.length)
        if p.bias is not None:
            bias = e._bias
            n = min(bias.shape[1], p.bias.shape[0])
            bias[s, :n] = p.bias[:n]
        e._block_ends = True  # the row may end a block at its next step: compact then (a no-op otherwise)
        self._live_changed()

    def _live_changed(self) -> None:
        e = self.e
        if e.plain:
            from thinkc.infer.plain import _set_live

            _set_live(e)
        elif e.gistfast:
            from thinkc.infer.gistpath import _refresh

            _refresh(e)
        e._emitting = sum(1 for x in e._left if x == 1)

    def summary(self) -> dict:
        pages = self.pool.pages
        return {"kv_budget": self.pool.kv_budget, "page_size": pages.page_size,
                "kv_peak": pages.peak_used * pages.page_size, "preemptions": self.preemptions,
                "attention": self.pool.attention}


def _take(state, s: int, B: int) -> dict:
    """Host copies of row s of every per-row tensor attribute of `state` (Rows or Slots)."""
    return {k: v[s].clone().cpu() for k, v in vars(state).items()
            if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == B}


def _put(state, s: int, saved: dict) -> None:
    for k, v in saved.items():
        t = getattr(state, k)
        if t.dim() == 1 or t.shape[1:] == v.shape:
            t[s] = v.to(t.device)
        else:  # the slot metadata grew meanwhile: the saved row is its prefix
            t[s, :v.shape[0]] = v.to(t.device)
