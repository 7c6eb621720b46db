"""The engine's side paths: the test/debug recording of what each row is fed and its logits, and
growing the static buffers (rare: a row that compresses very often can outgrow the capacity)."""
from __future__ import annotations

import torch

from thinkc.gist.rule import NEVER


def grow(engine, need: int) -> None:
    """Grow the cache and the slot metadata to at least `need` slots (new buffers are re-marked
    static for the captured graphs)."""
    engine.cache._grow_to(need)
    if engine._compiled is not None:
        from torch import _dynamo

        for buf in engine.cache.buffers():
            _dynamo.mark_static_address(buf)
    C, S = engine.cache.capacity, engine.slots
    for f, fill in (("token", 0), ("pos", 0), ("role", 0), ("seg", -1), ("doc", -1), ("expire", NEVER),
                    ("score", 0.0)):
        t = getattr(S, f)
        pad = torch.full((t.shape[0], C - t.shape[1]), fill, dtype=t.dtype, device=t.device)
        setattr(S, f, torch.cat([t, pad], 1))


def record_logits(engine, r, q: dict, last, logits, rest: bool) -> None:
    """Each row's logits at its last real query, with that query's position. A query inside a gist
    block (its [o] or the rest of the block still to come) produces no token and is not recorded."""
    rows = list(range(engine.B)) if r is None else r.tolist()
    for j, s in enumerate(rows):
        if engine.owner[s] is None or not bool(q["doc"][j, 0] >= 0):
            continue
        if not rest and engine._left[s] != 1:
            continue
        engine._meta[s]["logits"].append((int(q["pos"][j, last[j]]), logits[j].cpu().clone()))


def record_fed(engine, r, q: dict) -> None:
    """The augmented sequence each row is fed (token, role, segment; positions are absolute)."""
    rows = list(range(engine.B)) if r is None else r.tolist()
    tok, role, seg, doc = (q[f].cpu() for f in ("token", "role", "seg", "doc"))
    for j, s in enumerate(rows):
        if engine.owner[s] is None:
            continue
        for t, rl, sg, d in zip(tok[j].tolist(), role[j].tolist(), seg[j].tolist(), doc[j].tolist()):
            if d >= 0:
                engine._meta[s]["aug"].append((t, rl, sg))
