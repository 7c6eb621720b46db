"""The gist rule as a FlexAttention `mask_mod` (design.md §3; equal to rule.reference_mask).

The returned function closes over the batched metadata tensors; flags are Python bools, so the
branches below are resolved when the function is traced (nothing branches on tensor values), which
keeps it vmap- and torch.compile-friendly."""
from __future__ import annotations

import torch

from thinkc.gist.rule import GistMeta, Role


def gist_mask_mod(meta: GistMeta):
    """`mask_mod(b, h, q_idx, kv_idx) -> bool` for FlexAttention / create_block_mask. Heads share
    the mask (h is ignored); `b` indexes the rows of the (batched) metadata. A physically reordered
    row (meta.pos set) is masked by the logical positions of its tokens."""
    m = meta.batched()
    role, seg, doc, expire = (t.to(torch.int32) for t in (m.role, m.seg, m.doc, m.expire))
    pos = None if m.pos is None else m.pos.to(torch.int32)  # a reordered row: logical positions
    flags = m.flags
    cache = int(Role.CACHE)

    def mask_mod(b, h, q_idx, kv_idx):
        doc_q, doc_k = doc[b, q_idx], doc[b, kv_idx]
        same_doc = (doc_q == doc_k) & (doc_k >= 0)
        q_pos, k_pos = (q_idx, kv_idx) if pos is None else (pos[b, q_idx], pos[b, kv_idx])
        vis = same_doc & (k_pos <= q_pos) & (q_pos < expire[b, kv_idx])
        if not flags.any:
            return vis
        seg_k = seg[b, kv_idx]
        q_cache = role[b, q_idx] == cache
        same_seg = (seg[b, q_idx] == seg_k) & (seg_k >= 0)
        if flags.see_current:
            vis = vis & (~q_cache | same_seg)
        sibling = q_cache & (role[b, kv_idx] == cache) & same_seg & same_doc
        if flags.diagonal:
            vis = torch.where(sibling, q_pos == k_pos, vis)
        elif flags.bi_directional:
            vis = vis | sibling
        return vis

    return mask_mod
