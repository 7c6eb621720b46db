"""BlockMask tiles of a row in any physical order (thinkc.gist.reorder), from the metadata alone:
O(L log L + tiles + flagged pairs), never L x L.

A reordered document is a few physical runs (prompt, gist blocks, the rest), each holding its
tokens in increasing logical order. Under the base rule a key k is visible to the queries of its
document whose logical position lies in [pos[k], expire[k]): inside every run of the document these
queries are one contiguous physical range (a binary search on the run's logical positions). Per
(key, run) that range adds to the tile counts exactly as one interval per key does in
thinkc.ops.block_mask (first tile, last tile, whole tiles between via a difference array). Cache
queries changed by a flag are counted pair by pair over their own segment with the mask_mod. A
sequence-order row is the one-run-per-document case. Precondition (as for thinkc.ops.block_mask):
every document is one contiguous run of the row, as reordering keeps it."""
from __future__ import annotations

import torch

from thinkc.gist.mask_mod import gist_mask_mod
from thinkc.gist.rule import GistFlags, GistMeta, Role


def tile_counts(meta: GistMeta, q_block: int, kv_block: int) -> torch.Tensor:
    """Visible (query, key) pairs per tile, [B, nQ, nKV] int64, for a row in any physical order."""
    m = meta.batched()
    B, L = m.role.shape
    n_q, n_kv = -(-L // q_block), -(-L // kv_block)
    out = torch.zeros(B, n_q, n_kv, dtype=torch.long, device=m.role.device)
    for b in range(B):
        row = GistMeta(*(t[b] for t in (m.role, m.seg, m.doc, m.expire)), m.flags, m.positions()[b])
        out[b] = _interval_counts(row, q_block, kv_block, n_q, n_kv)
        if m.flags.any:
            out[b] += _cache_query_counts(row, q_block, kv_block, n_q, n_kv)
    return out


def _runs(pos: torch.Tensor, doc: torch.Tensor) -> torch.Tensor:
    """Run id per token: a new run wherever the logical position stops increasing or the doc changes."""
    new = torch.ones_like(pos, dtype=torch.bool)
    new[1:] = (pos[1:] <= pos[:-1]) | (doc[1:] != doc[:-1])
    return new.long().cumsum(0) - 1


def _interval_counts(m: GistMeta, q_block: int, kv_block: int, n_q: int, n_kv: int) -> torch.Tensor:
    role, doc, pos = m.role.long(), m.doc.long(), m.pos.long()
    L, dev = role.numel(), role.device
    normal = (role != int(Role.CACHE)) if m.flags.see_current else torch.ones(L, dtype=torch.bool, device=dev)
    prefix = torch.zeros(L + 1, dtype=torch.long, device=dev)
    prefix[1:] = normal.long().cumsum(0)
    run = _runs(pos, doc)
    sorted_key = run * (L + 1) + pos  # increasing along the row
    # the runs of each key's document: [first, last]
    first_of_doc = _first_run_of_doc(run, doc)
    last_of_doc = _last_run_of_doc(run, doc)
    keys = torch.nonzero(doc >= 0).flatten()
    n_pairs = last_of_doc[keys] - first_of_doc[keys] + 1
    k = torch.repeat_interleave(keys, n_pairs)
    r = first_of_doc[k] + torch.arange(k.numel(), device=dev) - torch.repeat_interleave(
        torch.cumsum(n_pairs, 0) - n_pairs, n_pairs)
    end = torch.clamp(m.expire.long()[k], max=L)  # NEVER: past the row
    a = torch.searchsorted(sorted_key, r * (L + 1) + pos[k])
    e = torch.searchsorted(sorted_key, r * (L + 1) + torch.maximum(end, pos[k]))
    return _add_intervals(a, e, k // kv_block, prefix, normal, q_block, n_q, n_kv)


def _first_run_of_doc(run: torch.Tensor, doc: torch.Tensor) -> torch.Tensor:
    """Per token: the first run of its document run (docs are contiguous runs of the row)."""
    new_doc = torch.ones_like(doc, dtype=torch.bool)
    new_doc[1:] = doc[1:] != doc[:-1]
    starts = torch.where(new_doc, run, torch.zeros_like(run))
    return starts.cummax(0).values


def _last_run_of_doc(run: torch.Tensor, doc: torch.Tensor) -> torch.Tensor:
    ends = torch.ones_like(doc, dtype=torch.bool)
    ends[:-1] = doc[1:] != doc[:-1]
    last = torch.where(ends, run, torch.full_like(run, run.numel()))
    return last.flip(0).cummin(0).values.flip(0)


def _add_intervals(a, e, kb, prefix, normal, q_block: int, n_q: int, n_kv: int) -> torch.Tensor:
    """Counts of the normal queries in physical ranges [a, e) per (q-tile, key tile kb)."""
    L, dev = normal.numel(), normal.device
    ok = e > a
    a, e, kb = a[ok], e[ok], kb[ok]
    qa, qe = a // q_block, (e - 1) // q_block
    P = lambda i: prefix[i.clamp(max=L)]  # noqa: E731
    same = qa == qe
    counts = torch.zeros(n_q * n_kv, dtype=torch.long, device=dev)
    counts.index_add_(0, qa * n_kv + kb, torch.where(same, P(e) - P(a), P((qa + 1) * q_block) - P(a)))
    counts.index_add_(0, qe * n_kv + kb, (P(e) - P(qe * q_block)) * ~same)
    inner = (qe > qa + 1).long()
    diff = torch.zeros(n_q * n_kv, dtype=torch.long, device=dev)
    diff.index_add_(0, (qa + 1).clamp(max=n_q - 1) * n_kv + kb, inner)
    diff.index_add_(0, qe * n_kv + kb, -inner)
    starts = torch.arange(n_q + 1, device=dev).mul(q_block).clamp(max=L)
    in_block = prefix[starts[1:]] - prefix[starts[:-1]]
    return counts.view(n_q, n_kv) + diff.view(n_q, n_kv).cumsum(0) * in_block[:, None]


def _cache_query_counts(m: GistMeta, q_block: int, kv_block: int, n_q: int, n_kv: int) -> torch.Tensor:
    """Count changes from cache-token queries under a flag: their whole row over their own segment
    (see_current; left out of the interval counts) or the difference on their sibling cache tokens."""
    role, seg, doc = m.role.long(), m.seg.long(), m.doc.long()
    dev, flags = role.device, m.flags
    is_cache = role == int(Role.CACHE)
    relevant = (seg >= 0) & (doc >= 0) & (torch.ones_like(is_cache) if flags.see_current else is_cache)
    members = torch.nonzero(relevant).flatten()
    ids, inverse = torch.unique(seg[members], return_inverse=True)
    order = torch.argsort(inverse, stable=True)
    members, counts = members[order], torch.bincount(inverse, minlength=ids.numel())
    starts = torch.cumsum(counts, 0) - counts
    queries = torch.nonzero(is_cache & (seg >= 0) & (doc >= 0)).flatten()
    slot = torch.searchsorted(ids, seg[queries])  # every such query is a member of its own segment
    span = counts[slot]
    q = torch.repeat_interleave(queries, span)
    first = torch.repeat_interleave(starts[slot] - (torch.cumsum(span, 0) - span), span)
    k = members[first + torch.arange(q.numel(), device=dev)]
    zero = torch.zeros_like(q)
    now = gist_mask_mod(m)(zero, 0, q, k).long()
    if not flags.see_current:
        now = now - gist_mask_mod(GistMeta(m.role, m.seg, m.doc, m.expire, GistFlags(), m.pos))(zero, 0, q, k).long()
    out = torch.zeros(n_q * n_kv, dtype=torch.long, device=dev)
    out.index_add_(0, (q // q_block) * n_kv + k // kv_block, now)
    return out.view(n_q, n_kv)

