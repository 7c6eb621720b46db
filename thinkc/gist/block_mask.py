"""The gist rule as a FlexAttention BlockMask, built from the metadata without an L x L mask.

    bm = gist_block_mask(meta, block_size=128)
    out = flex_attention(q, k, v, block_mask=bm, enable_gqa=True)

Tiles come from thinkc.ops.block_mask.build_gist_block_mask (CUDA / C++ / torch); the mask_mod
(thinkc.gist.mask_mod) refines the partial tiles inside the kernel. Equal to
create_block_mask(gist_mask_mod(meta), B, 1, L, L, BLOCK_SIZE=block_size), also for a physically
reordered row (meta.pos set; its tiles come from thinkc.gist.reorder)."""
from __future__ import annotations

from torch.nn.attention.flex_attention import BlockMask

from thinkc.gist.mask_mod import gist_mask_mod
from thinkc.gist.rule import GistMeta
from thinkc.ops.block_mask import build_gist_block_mask


def gist_block_mask(meta: GistMeta, block_size: int | tuple[int, int] = 128) -> BlockMask:
    """BlockMask [B, 1, L, L] for `meta` (1-D or [B, L]), on the metadata's device."""
    m = meta.batched()
    L = m.role.shape[-1]
    if m.pos is None:
        kv_num, kv_idx, full_num, full_idx = build_gist_block_mask(m, block_size)
    else:  # a physically reordered row (thinkc.gist.reorder): tiles counted from the rule
        from thinkc.gist.reorder import reordered_block_mask_tensors

        kv_num, kv_idx, full_num, full_idx = reordered_block_mask_tensors(m, block_size)
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block_size,
                                    mask_mod=gist_mask_mod(m), seq_lengths=(L, L))


def block_sparsity(block_mask: BlockMask) -> float:
    """Share of (q-block, kv-block) tiles skipped (neither partial nor full), in [0, 1]; over all
    tiles of the padded L x L grid, like BlockMask.sparsity() (which gives a percentage)."""
    computed = block_mask.kv_num_blocks.sum()
    if block_mask.full_kv_num_blocks is not None:
        computed = computed + block_mask.full_kv_num_blocks.sum()
    total = block_mask.kv_indices.numel()  # B * H * nQ * nKV
    return 1.0 - computed.item() / total
