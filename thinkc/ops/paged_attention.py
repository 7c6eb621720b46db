"""`paged_attention`: attention over a paged KV pool, reading the rows' keys through the block table.

Layout (thinkc/infer/pool.py): each layer's K and V is a contiguous [1, H, P, D] tensor with
P = (n_pages + 1) * page_size, physical page p owning slots [p * page_size, (p + 1) * page_size) of
dim 2; `block_table` int32 [b, max_pages] maps row i's logical key j to slot
block_table[i, j // page_size] * page_size + j % page_size. Entries past a row's pages point at the
null page (garbage): the keys there are always masked.

    out = paged_attention(q, k_pool, v_pool, block_table, page_size, kv_len, mask, scale)

q [b, Hq, W, D] (W = 1 for a decode step), Hq a multiple of H (query head hq reads KV head
hq // (Hq // H)); mask: additive, [b, 1, W, kv_len], in q's dtype; out [b, Hq, W, D] contiguous, in q's
dtype, accumulated in float32. It equals
    scaled_dot_product_attention(q, K, V, attn_mask=mask, scale=scale, enable_gqa=True)
on the gathered logical K / V [b, H, kv_len, D] for every query that sees at least one key, with two
definitions SDPA lacks:
  - a mask entry <= torch.finfo(dtype).min (or -inf, or NaN) means "not visible": the key is skipped,
    its K / V slot is never read (so garbage or NaN there cannot leak into the output), and a
    block-table entry is only looked at for pages holding a visible key;
  - a query that sees no key at all outputs zeros (SDPA gives NaN for a row of -inf and the plain
    average of the values for a row of finfo.min).

Runs torch.ops.thinkc.paged_attention (C++, CPU only; on CUDA the engine uses FlexAttention) when the
extension is built, else `paged_attention_torch` (whole pages gathered with one index_select, then
SDPA). `paged_attention_reference` is the naive per-(row, query) loop the tests compare both against.
"""
from __future__ import annotations

import math
import numbers
import operator

import torch
import torch.nn.functional as F

from thinkc.ops._backend import backend

_NAME = "paged_attention"
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _is_int(x) -> bool:
    if isinstance(x, bool):
        return False
    try:
        operator.index(x)
    except TypeError:
        return False
    return True


def _check_tensors(q, k_pool, v_pool, block_table, mask) -> None:
    for name, t in (("q", q), ("k_pool", k_pool), ("v_pool", v_pool), ("block_table", block_table), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{_NAME}: {name} must be a tensor, got {type(t).__name__}")
        if t.device != q.device:
            raise ValueError(f"{_NAME}: {name} is on {t.device}, q on {q.device} (all must be on one device)")
    if q.dim() != 4:
        raise ValueError(f"{_NAME}: q must be [b, Hq, W, D], got {tuple(q.shape)}")
    if q.dtype not in _DTYPES:
        raise ValueError(f"{_NAME}: q must be float32, bfloat16 or float16, got {q.dtype}")
    for name, t in (("k_pool", k_pool), ("v_pool", v_pool), ("mask", mask)):
        if t.dtype != q.dtype:
            raise ValueError(f"{_NAME}: {name} is {t.dtype}, q is {q.dtype} (all must share q's dtype)")
    if k_pool.dim() != 4 or k_pool.shape[0] != 1:
        raise ValueError(f"{_NAME}: k_pool must be [1, H, P, D], got {tuple(k_pool.shape)}")
    if v_pool.shape != k_pool.shape:
        raise ValueError(f"{_NAME}: v_pool is {tuple(v_pool.shape)}, k_pool {tuple(k_pool.shape)} (must match)")
    if not (k_pool.is_contiguous() and v_pool.is_contiguous()):
        raise ValueError(f"{_NAME}: k_pool and v_pool must be contiguous")
    b, Hq, _, D = q.shape
    H = k_pool.shape[1]
    if k_pool.shape[3] != D:
        raise ValueError(f"{_NAME}: q head dim {D} != pool head dim {k_pool.shape[3]}")
    if H < 1 or Hq % H:
        raise ValueError(f"{_NAME}: query heads Hq={Hq} are not a multiple of the pool's KV heads H={H}")
    if block_table.dtype != torch.int32 or block_table.dim() != 2 or block_table.shape[0] != b:
        raise ValueError(f"{_NAME}: block_table must be int32 [b={b}, max_pages], got {block_table.dtype} "
                         f"{tuple(block_table.shape)}")


def check_paged_attention_args(q, k_pool, v_pool, block_table, page_size, kv_len, mask, scale) -> None:
    """ValueError with the reason when the arguments break the op's contract (shapes, dtypes, devices,
    sizes: metadata only, reads no tensor data)."""
    _check_tensors(q, k_pool, v_pool, block_table, mask)
    if not _is_int(page_size) or page_size < 1:
        raise ValueError(f"{_NAME}: page_size must be an int >= 1, got {page_size!r}")
    P = k_pool.shape[2]
    if P % page_size:
        raise ValueError(f"{_NAME}: pool slots P={P} are not a whole number of pages of page_size={page_size}")
    cap = block_table.shape[1] * page_size
    if not _is_int(kv_len) or not 0 <= kv_len <= cap:
        raise ValueError(f"{_NAME}: kv_len must be an int in [0, max_pages * page_size={cap}], got {kv_len!r}")
    b, _, W, _ = q.shape
    if tuple(mask.shape) != (b, 1, W, kv_len):
        raise ValueError(f"{_NAME}: mask must be [b, 1, W, kv_len] = {[b, 1, W, int(kv_len)]}, got "
                         f"{tuple(mask.shape)}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
        raise ValueError(f"{_NAME}: scale must be a finite real number, got {scale!r}")


def paged_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, block_table: torch.Tensor,
                    page_size: int, kv_len: int, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Attention of q [b, Hq, W, D] over logical keys [0, kv_len) of each row of the pool (module doc)."""
    check_paged_attention_args(q, k_pool, v_pool, block_table, page_size, kv_len, mask, scale)
    if backend(_NAME, q.device) != "torch":
        return torch.ops.thinkc.paged_attention(q, k_pool, v_pool, block_table.contiguous(), int(page_size),
                                                int(kv_len), mask, float(scale))
    return paged_attention_torch(q, k_pool, v_pool, block_table, int(page_size), int(kv_len), mask, float(scale))


def _visible(mask: torch.Tensor) -> torch.Tensor:
    """Bool [b, 1, W, kv_len]: entries above the dtype's lowest finite value (-inf, min and NaN are not)."""
    return mask > torch.finfo(mask.dtype).min


def _gather_pages(pool: torch.Tensor, pages: torch.Tensor, page_size: int, kv_len: int,
                  hidden: torch.Tensor) -> torch.Tensor:
    """[b, H, kv_len, D] logical rows: one index_select of whole pages (a fresh copy), the slots `hidden`
    (flat indices into the b * n_pg * page_size gathered slots) zeroed in it, then a strided view."""
    _, H, P, D = pool.shape
    b, n_pg = pages.shape
    blocks = pool.view(H, P // page_size, page_size * D).index_select(1, pages.reshape(-1))
    blocks.view(H, b * n_pg * page_size, D).index_fill_(1, hidden, 0)
    return blocks.view(H, b, n_pg * page_size, D).transpose(0, 1)[:, :, :kv_len]


def paged_attention_torch(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, block_table: torch.Tensor,
                          page_size: int, kv_len: int, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Pure-torch version (any device): gathers the rows' pages, zeroes the gathered slots of keys no
    query sees (garbage must not reach SDPA: NaN * 0 is NaN), runs SDPA, zeroes the queries that see
    nothing. Raises ValueError when a page holding a visible key is not a page of the pool (one sync)."""
    b, Hq, W, D = q.shape
    if kv_len == 0 or b == 0 or W == 0:
        return q.new_zeros(b, Hq, W, D)
    n_pg, n_phys = -(-kv_len // page_size), k_pool.shape[2] // page_size
    visible = _visible(mask)
    seen = F.pad(visible.any(dim=2)[:, 0], (0, n_pg * page_size - kv_len), value=True)  # [b, n_pg * ps]
    pages = block_table[:, :n_pg].long()
    outside = (pages < 0) | (pages >= n_phys)
    bad = (outside & seen.view(b, n_pg, page_size).any(-1)).nonzero()
    if bad.numel():
        i, p = (int(x) for x in bad[0])
        raise ValueError(f"{_NAME}: row {i}: block_table[{i}, {p}] = {int(pages[i, p])} is not a page of the pool "
                         f"[0, {n_phys}) but holds keys the mask shows")
    pages = pages.masked_fill(outside, 0)  # pages nobody reads: any valid page will do
    hidden = (~seen).reshape(-1).nonzero().flatten()
    K = _gather_pages(k_pool, pages, page_size, kv_len, hidden)
    V = _gather_pages(v_pool, pages, page_size, kv_len, hidden)
    out = F.scaled_dot_product_attention(q, K, V, attn_mask=mask, scale=scale, enable_gqa=True)
    return out.masked_fill(~visible.any(-1, keepdim=True), 0).contiguous()


def paged_attention_reference(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, block_table: torch.Tensor,
                              page_size: int, kv_len: int, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Naive loop (tests only), in float64: for every (row, query position) the visible keys' slots,
    their K / V gathered one by one through the block table, an explicit softmax; zeros when none."""
    b, Hq, W, D = q.shape
    G = Hq // k_pool.shape[1]
    table, vis = block_table.tolist(), _visible(mask)
    out = torch.zeros(b, Hq, W, D, dtype=torch.float64, device=q.device)
    for i in range(b):
        for w in range(W):
            keys = vis[i, 0, w].nonzero().flatten().tolist()
            if not keys:
                continue
            slots = torch.tensor([table[i][j // page_size] * page_size + j % page_size for j in keys], device=q.device)
            K = k_pool[0][:, slots].double().repeat_interleave(G, 0)  # [Hq, n, D]
            V = v_pool[0][:, slots].double().repeat_interleave(G, 0)
            s = torch.einsum("hd,hnd->hn", q[i, :, w].double(), K) * scale + mask[i, 0, w, keys].double()
            e = torch.exp(s - s.max(-1, keepdim=True).values)
            out[i, :, w] = torch.einsum("hn,hnd->hd", e / e.sum(-1, keepdim=True), V)
    return out.to(q.dtype)


def _register_fake() -> None:
    """The op's shape function, so the engine's compiled step (torch.compile, fullgraph) can trace it."""
    if backend(_NAME, "cpu") == "torch":
        return

    @torch.library.register_fake("thinkc::paged_attention")
    def _fake(q, k_pool, v_pool, block_table, page_size, kv_len, mask, scale):
        return torch.empty(q.shape, dtype=q.dtype, device=q.device)


_register_fake()
