"""Rows-in-flight buckets over the KV pool: a step costs what its slots cost, filled or not, so with a
pool the engine runs only as many slots as a power-of-two bucket of the rows in flight needs (one
compiled graph per bucket; design.md §4). Rows are packed into the lowest slots by moving their
state; with the pool a move copies no KV, only the row's block table, so it is cheap.

    rebucket(engine, want)   # after admission / retirement: grow for newcomers, shrink when few run

Growing pads every per-row tensor with an empty row (it feeds nothing, holds no pages); shrinking
first packs the live rows into slots [0, n) and then drops the tail. Without a pool the engine keeps
its slots (the static cache reserves memory per slot: nothing to gain)."""
from __future__ import annotations

import torch

from thinkc.gist.rule import NEVER

EMPTY = {"seg": -1, "doc": -1, "expire": NEVER, "recent": -1, "feed_expire": NEVER}  # fill of an empty slot's fields (else 0)


def bucket(n: int, most: int, least: int = 8) -> int:
    """The smallest power of two (at least `least`) that holds n rows, capped at `most`."""
    b = least
    while b < n:
        b *= 2
    return min(b, most)


def rebucket(engine, want: int) -> None:
    """Resize the engine to the bucket of `want` rows (the rows in flight plus those about to join),
    shrinking only when they fill a quarter of the slots or less (no flapping between two buckets)."""
    if engine._compiled is not None and engine.device.type == "cuda":
        return  # graphs on a GPU: a step is weight-bound (slots cost little) and each bucket compiles (~30 s at 7B)
    K = bucket(max(want, 1), engine.max_slots)
    if K > engine.B or 4 * max(want, 1) <= engine.B and K < engine.B:
        _pack(engine, K)
        _resize(engine, K)


def _pack(engine, K: int) -> None:
    """Move live rows from slots >= K into free slots < K."""
    free = [s for s in range(min(K, engine.B)) if engine.owner[s] is None]
    for s in range(K, engine.B):
        if engine.owner[s] is not None:
            move_row(engine, s, free.pop(0))


def move_row(engine, s: int, t: int) -> None:
    """Row s moves to empty slot t: device state, host state and block table (its KV stays put)."""
    from thinkc.infer.scheduler import _put, _take

    e, pool = engine, engine.cache
    for state in (e.rows, e.slots):
        _put(state, t, _take(state, s, e.B))
    pool.lengths[t] = pool.lengths[s]
    pages = pool.pages
    pages.owned[t], pages.owned[s] = pages.owned[s], []
    pages.table[t] = pages.table[s]
    pages.table[s] = pages.null
    for d in (e._host, e._meta):
        if s in d:
            d[t] = d.pop(s)
    for lst in (e.owner, e._finished, e._left, e._lengths, e.sched.seq):
        lst[t] = lst[s]
    e.owner[s], e._finished[s], e._left[s], e._lengths[s] = None, False, 0, 0
    bias = getattr(e, "_bias", None)
    if bias is not None:
        bias[t] = bias[s]
        bias[s] = torch.finfo(bias.dtype).min
    e.rows.feed_n[s] = 0
    e.rows.feed_ptr[s] = 0


def _resize(engine, K: int) -> None:
    e, B = engine, engine.B
    for state in (e.rows, e.slots):
        for k, v in list(vars(state).items()):
            if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == B:
                setattr(state, k, _fit(v, K, EMPTY.get(k, 0)))
    pool = e.cache
    pool.lengths, pool.peak_length = _fit(pool.lengths, K, 0), _fit(pool.peak_length, K, 0)
    pool.pages.table = _fit(pool.pages.table, K, pool.pages.null)
    pool.pages.owned = (pool.pages.owned + [[] for _ in range(K)])[:K]
    pool.batch_size_ = K
    if getattr(e, "_bias", None) is not None:
        e._bias = _fit(e._bias, K, torch.finfo(e._bias.dtype).min)
    for name, fill in (("owner", None), ("_finished", False), ("_left", 0), ("_lengths", 0)):
        setattr(e, name, (getattr(e, name) + [fill] * K)[:K])
    e.sched.seq = (e.sched.seq + [0] * K)[:K]
    e._zeros = torch.zeros(K, dtype=torch.long, device=e.device)
    e.B = K
    e.sched._live_changed()


def _fit(t: torch.Tensor, K: int, fill) -> torch.Tensor:
    if t.shape[0] >= K:
        return t[:K].clone()
    pad = torch.full((K - t.shape[0], *t.shape[1:]), fill, dtype=t.dtype, device=t.device)
    return torch.cat([t, pad])
