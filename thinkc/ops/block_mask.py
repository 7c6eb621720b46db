"""`build_gist_block_mask`: FlexAttention's BlockMask tensors for the gist rule, straight from the
per-token metadata, in O(L + tiles) memory (never L x L).

Runs the compiled op (torch.ops.thinkc.build_gist_block_mask: CUDA kernel or C++) when the
extension has one for the tensors' device, else `build_gist_block_mask_torch`, the same algorithm
in vectorised torch. All three equal `create_block_mask(gist_mask_mod(meta), B, 1, L, L)` exactly:
kv_num_blocks [B, 1, nQ] int32 and kv_indices [B, 1, nQ, nKV] int32 for partial tiles (the row's
tiles ascending, then its other columns ascending), the same two for full tiles.

Algorithm (csrc/cpu/gist_block_mask.h says it at length): with all flags off a key k is visible
to the queries of its document run in [k, expire[k]), so per-tile counts of visible pairs come
from one interval per key (difference array over q-blocks + the two end blocks). Cache-token
queries changed by a flag are handled explicitly over their own segment's span. Empty tile:
count 0; full tile: count == Q_BLOCK * KV_BLOCK (edge tiles cut by L never are).
"""
from __future__ import annotations

import torch

from thinkc.gist.mask_mod import gist_mask_mod
from thinkc.gist.rule import GistFlags, GistMeta, Role
from thinkc.ops._backend import backend, extension_status

BlockMaskTensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _block_sizes(block_size: int | tuple[int, int]) -> tuple[int, int]:
    q_block, kv_block = (block_size, block_size) if isinstance(block_size, int) else block_size
    if q_block <= 0 or kv_block <= 0:
        raise ValueError(f"block sizes must be positive, got {block_size}")
    return int(q_block), int(kv_block)


def build_gist_block_mask(meta: GistMeta, block_size: int | tuple[int, int] = 128,
                          check: bool = True) -> BlockMaskTensors:
    """(kv_num_blocks, kv_indices, full_kv_num_blocks, full_kv_indices) for `meta` (1-D or [B, L]).
    `check` validates the preconditions (each doc id one contiguous run; seg ids < L when a
    cache-token flag is on): a ValueError on CPU, an asynchronous device assert on CUDA (no sync).
    The C++ op always checks them."""
    m = meta.batched()
    q_block, kv_block = _block_sizes(block_size)
    which = backend("build_gist_block_mask", m.role.device)
    if check and which != "cpp":  # the C++ op checks them itself
        _check_preconditions(m)
    f = m.flags
    if which != "torch":
        return tuple(torch.ops.thinkc.build_gist_block_mask(
            m.role, m.seg, m.doc, m.expire, q_block, kv_block, f.see_current, f.bi_directional, f.diagonal))
    return build_gist_block_mask_torch(m, (q_block, kv_block))


def _check_preconditions(m: GistMeta) -> None:
    B, L = m.doc.shape
    doc = m.doc.long()
    starts = torch.ones_like(doc, dtype=torch.bool)
    starts[:, 1:] = doc[:, 1:] != doc[:, :-1]
    # ids of runs, with distinct negative fillers elsewhere: a repeated id = a split document
    filler = -1 - torch.arange(L, device=doc.device)
    run_ids = torch.where(starts & (doc >= 0), doc, filler).sort(dim=1).values
    doc_ok = ~(run_ids[:, 1:] == run_ids[:, :-1]).any()
    seg_ok = ~(m.seg.long() >= L).any() if m.flags.any else None
    if m.role.device.type != "cpu":  # no host sync: a device-side assert instead
        torch._assert_async(doc_ok if seg_ok is None else doc_ok & seg_ok)
        return
    if not bool(doc_ok):
        raise ValueError("gist block mask: each doc id must occupy one contiguous run of the row")
    if seg_ok is not None and not bool(seg_ok):
        raise ValueError("gist block mask: seg ids must be < L when a cache-token flag is on")


def build_gist_block_mask_torch(meta: GistMeta, block_size: int | tuple[int, int] = 128) -> BlockMaskTensors:
    """Pure-torch version of the op (any device), vectorised over the batch."""
    m = meta.batched()
    q_block, kv_block = _block_sizes(block_size)
    role, seg, doc = m.role.long(), m.seg.long(), m.doc.long()
    expire = m.expire.long()
    flags, dev = m.flags, m.role.device
    B, L = role.shape
    n_q, n_kv = -(-L // q_block), -(-L // kv_block)
    tiles = n_q * n_kv
    idx = torch.arange(L, device=dev)
    rows = torch.arange(B, device=dev)[:, None]
    is_cache = role == int(Role.CACHE)

    # normal_prefix[b, i]: queries before i that follow the base rule
    normal = ~is_cache if flags.see_current else torch.ones_like(is_cache)
    normal_prefix = torch.zeros(B, L + 1, dtype=torch.long, device=dev)
    normal_prefix[:, 1:] = normal.long().cumsum(1)
    # run_end[b, k]: one past the last index of k's document run (suffix min of run ends)
    ends_here = torch.ones_like(is_cache)
    ends_here[:, :-1] = doc[:, 1:] != doc[:, :-1]
    boundary = torch.where(ends_here, idx + 1, L).expand(B, L)
    run_end = boundary.flip(1).cummin(1).values.flip(1)

    # one interval [a, e) of visible queries per key
    a = idx.expand(B, L)
    e = torch.minimum(expire, run_end)
    valid = (doc >= 0) & (e > a)
    e = torch.where(valid, e, a + 1)  # harmless stand-in for invalid keys (their weights are 0)
    kb, qa, qe = idx // kv_block, a // q_block, (e - 1) // q_block
    P = lambda pos: normal_prefix.gather(1, pos.clamp(max=L))  # noqa: E731
    same = qa == qe
    base = rows * tiles + kb
    counts = torch.zeros(B * tiles, dtype=torch.long, device=dev)
    diff = torch.zeros(B * tiles, dtype=torch.long, device=dev)
    first = torch.where(same, P(e) - P(a), P((qa + 1) * q_block) - P(a))
    counts.index_add_(0, (base + qa * n_kv).flatten(), (first * valid).flatten())
    counts.index_add_(0, (base + qe * n_kv).flatten(), ((P(e) - P(qe * q_block)) * (valid & ~same)).flatten())
    inner = (valid & (qe > qa + 1)).long()
    diff.index_add_(0, (base + ((qa + 1).clamp(max=n_q - 1)) * n_kv).flatten(), inner.flatten())
    diff.index_add_(0, (base + qe * n_kv).flatten(), -inner.flatten())
    covering = diff.view(B, n_q, n_kv).cumsum(1)
    starts = torch.arange(n_q + 1, device=dev).mul(q_block).clamp(max=L)
    normal_in_block = normal_prefix[:, starts[1:]] - normal_prefix[:, starts[:-1]]
    counts = counts.view(B, n_q, n_kv) + covering * normal_in_block[:, :, None]

    if flags.any:
        counts = counts + _cache_query_counts(m, q_block, kv_block, n_q, n_kv)

    full = q_block * kv_block
    partial_tiles = ((counts > 0) & (counts < full)).to(torch.int32)[:, None]
    full_tiles = (counts == full).to(torch.int32)[:, None]
    return (*_ordered(partial_tiles), *_ordered(full_tiles))


def _cache_query_counts(m: GistMeta, q_block: int, kv_block: int, n_q: int, n_kv: int) -> torch.Tensor:
    """Per-tile count changes from flagged cache-token queries: their whole row over their segment's
    span (see_current; they are left out of the interval counting) or the +-1 difference from the
    base row on their sibling cache tokens (bi_directional / diagonal)."""
    role, seg, doc, expire = m.role.long(), m.seg.long(), m.doc.long(), m.expire.long()
    flags, dev = m.flags, m.role.device
    B, L = role.shape
    is_cache = role == int(Role.CACHE)
    # span [lo, hi] per (row, seg) of the keys that may change: all of the segment, or its cache tokens
    relevant = (seg >= 0) & (seg < L) & (torch.ones_like(is_cache) if flags.see_current else is_cache)
    slot = torch.where(relevant, seg, L)  # column L collects the irrelevant tokens
    pos = torch.arange(L, device=dev).expand(B, L)
    lo = torch.full((B, L + 1), L, dtype=torch.long, device=dev).scatter_reduce(1, slot, pos, "amin")
    hi = torch.full((B, L + 1), -1, dtype=torch.long, device=dev).scatter_reduce(1, slot, pos, "amax")

    qb, qq = torch.nonzero(is_cache & (seg >= 0) & (seg < L) & (doc >= 0), as_tuple=True)
    q_seg = seg[qb, qq]
    q_lo, q_hi = lo[qb, q_seg], hi[qb, q_seg]
    span = (q_hi - q_lo + 1).clamp(min=0)
    # every (query, key in its span) pair, flattened
    pair_q = torch.repeat_interleave(torch.arange(qq.numel(), device=dev), span)
    first_pair = torch.cumsum(span, 0) - span
    pair_k = q_lo[pair_q] + torch.arange(pair_q.numel(), device=dev) - first_pair[pair_q]
    pb, pq = qb[pair_q], qq[pair_q]

    # the rule itself, evaluated elementwise on the pairs (mask_mods broadcast)
    now = gist_mask_mod(m)(pb, 0, pq, pair_k)
    if flags.see_current:
        delta = now.long()
    else:
        base = gist_mask_mod(GistMeta(m.role, m.seg, m.doc, m.expire, GistFlags()))(pb, 0, pq, pair_k)
        delta = now.long() - base.long()
    out = torch.zeros(B * n_q * n_kv, dtype=torch.long, device=dev)
    out.index_add_(0, (pb * n_q + pq // q_block) * n_kv + pair_k // kv_block, delta)
    return out.view(B, n_q, n_kv)


def _ordered(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What torch's _dense_to_ordered does: counts, and the stable descending argsort of the 0/1 tiles."""
    num = tiles.sum(-1).to(torch.int32)
    order = torch.argsort(tiles, dim=-1, descending=True, stable=True).to(torch.int32)
    return num.contiguous(), order.contiguous()


def _register_fake() -> None:
    """Shape-only version of the compiled op, so torch.compile can trace through it."""
    if not extension_status()[0] or not hasattr(torch.ops.thinkc, "build_gist_block_mask"):
        return

    @torch.library.register_fake("thinkc::build_gist_block_mask")
    def _(role, seg, doc, expire, q_block, kv_block, see_current, bi_directional, diagonal):
        B, L = role.shape
        n_q, n_kv = -(-L // q_block), -(-L // kv_block)
        num = role.new_empty((B, 1, n_q), dtype=torch.int32)
        idx = role.new_empty((B, 1, n_q, n_kv), dtype=torch.int32)
        return num, idx, torch.empty_like(num), torch.empty_like(idx)


_register_fake()
