"""Attention over the KV pool, read in place (design.md §4). The engine's mask stays what it is (the
rule of thinkc.gist.rule over each row's logical slots, an additive [b, 1, W, kv_len] tensor); this
module maps the pool's physical keys back to logical slots so no row's keys are copied first.

Modes (PagedKVCache.attention):
  * "gather": the rows' pages are gathered into [b, H, kv_len, D] and SDPA runs on them (any device;
    the reference the others are tested against).
  * "flex": torch FlexAttention straight on the pool ([1, H, P, D]): a BlockMask built from the block
    tables lists each row's own pages only (block-sparse: the cost follows the row's live pages), and
    the mask_mod maps a physical key to (its page's logical index, offset) and looks the rule's decision
    up in the engine's mask. With kv_len fixed (the row capacity) every shape is fixed, so one compiled
    graph serves every length. The CUDA default.
  * "kernel": thinkc's C++ op (thinkc.ops.paged_attention) on CPU. Written in thinkc, not FlexAttention,
    because torch's compiled CPU flex measured 3.3 ms per call against 1.2 ms for SDPA (64 rows x 560
    keys, one thread), and eager flex materialises every score.

The model calls `paged_attention_forward` through transformers' AttentionInterface (registered as
"thinkc_paged"; `pool_attention` switches the model to it for a run and back). Outside a pool forward
it is SDPA, unchanged. `compile_step` is the engine's compiled step forward (CUDA graphs on GPU)."""
from __future__ import annotations

from contextlib import contextmanager

import torch

NAME = "thinkc_paged"
Q_BLOCK = 128
_ACTIVE: list = [None]  # the PagedKVCache whose forward is running (set by set_write, cleared after)


def register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, paged_attention_forward)


def compile_step(engine, backend=None):
    """The engine's decode-step forward under torch.compile: CUDA graphs (mode "reduce-overhead") on
    GPU, inductor on CPU. Shapes are static per (rows bucket, step width, key length): keys are
    attended up to the next multiple of kv_bucket, or with the pool read by FlexAttention up to the row
    capacity (one shape for every length; DecodeEngine.step_kv_len), and the cache buffers
    have fixed addresses (marked static) so a captured graph writes into them in place. `fullgraph`:
    the forward has no graph break (no host sync inside). `backend` (tests): e.g. "aot_eager"."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    # policies that score keys (H2O, SnapKV, R-KV) compile too: the score sink's per-layer sums are
    # traced as part of the forward (dynamo replays the sink's attribute writes after the graph), and
    # R-KV's key redundancy, asked for one step before each compression, is a second graph
    for buf in engine.cache.buffers():
        torch._dynamo.mark_static_address(buf)
    if backend is not None:
        return torch.compile(engine._model_forward, backend=backend, dynamic=False, fullgraph=True)
    mode = "reduce-overhead" if engine.device.type == "cuda" else None
    return torch.compile(engine._model_forward, mode=mode, dynamic=False, fullgraph=True)


@contextmanager
def pool_attention(engine):
    """With a pool read in place, the model attends through thinkc.infer.attention for the run."""
    if engine.sched is None or engine.cache.attention == "gather" or engine.policy.needs_attention:
        yield
        return
    register()
    before = engine.model.config._attn_implementation
    engine.model.set_attn_implementation(NAME)
    try:
        yield
    finally:
        engine.model.set_attn_implementation(before)


def paged_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    pool = _ACTIVE[0]
    if pool is None or not pool.reads_in_place():  # the keys were gathered for SDPA
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if pool.attention == "flex":
        out = flex_over_pool(pool, query, key, value, attention_mask, scale)
    else:
        from thinkc.ops.paged_attention import paged_attention

        kv_len = pool._write[2][2]
        if torch.compiler.is_compiling():  # the op itself (its fake kernel traces); the checks ran eagerly
            out = torch.ops.thinkc.paged_attention(query, key, value, pool._read_table, pool.page_size, kv_len,
                                                   attention_mask, scale)
        else:
            out = paged_attention(query, key, value, pool._read_table, pool.page_size, kv_len, attention_mask, scale)
    return out.transpose(1, 2).contiguous(), None


def flex_over_pool(pool, query, key, value, mask, scale):
    """FlexAttention of query [b, Hq, W, D] over the pool's K/V [1, H, P, D] with the engine's additive
    mask [b, 1, W, kv_len] (0 = visible) on logical slots."""
    from torch.nn.attention.flex_attention import flex_attention

    block_mask = pool_block_mask(pool, mask, query.shape[2], key.shape[2])
    return flex_attention(query, key, value, block_mask=block_mask, scale=scale,
                          enable_gqa=query.shape[1] != key.shape[1])


def pool_block_mask(pool, mask, W: int, P: int):
    """BlockMask over physical keys: row i visits only its own pages (those its logical slots
    [0, kv_len) occupy, from the block table), and inside a page the mask_mod reads the engine's mask
    at the key's logical slot."""
    from torch.nn.attention.flex_attention import BlockMask

    ps, table, logical = pool.page_size, pool._read_table, pool.pages.logical
    kv_len = mask.shape[-1]
    n_pg = table.shape[1]
    b = table.shape[0]
    held = (table != pool.pages.null).sum(1).to(torch.int32)  # a row's pages come first in its table
    visible = mask[:, 0] == 0  # [b, W, kv_len]
    # the row each page belongs to this step (the BlockMask visits only a row's own pages; the mask_mod
    # checks it too, since an unfused flex, CPU eager, evaluates it on every key)
    owner = torch.full((P // ps,), -1, dtype=torch.long, device=table.device)
    owner.scatter_(0, table.reshape(-1).long(), torch.arange(b, device=table.device).repeat_interleave(n_pg))

    def mask_mod(bi, h, qi, kv):
        page = kv // ps
        lp = logical[page]
        j = lp * ps + kv % ps
        inside = (lp >= 0) & (owner[page] == bi) & (j < kv_len)
        return inside & visible[bi, qi, j.clamp(0, kv_len - 1)]

    # sparse query blocks of 128 (what the flex kernels tile by; a decode step's one query sits in the
    # first), each visiting the row's own pages
    n_q = -(-max(W, 1) // Q_BLOCK)
    kv_num = held[:, None, None].expand(b, 1, n_q).contiguous()
    kv_idx = torch.zeros(b, 1, n_q, P // ps, dtype=torch.int32, device=table.device)  # one column per page
    kv_idx[:, 0, :, :n_pg] = table[:, None, :]
    return BlockMask.from_kv_blocks(kv_num, kv_idx, BLOCK_SIZE=(Q_BLOCK, ps), mask_mod=mask_mod,
                                    seq_lengths=(W, P)) if b else None
