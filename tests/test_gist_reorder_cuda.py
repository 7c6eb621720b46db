"""Physical reordering on CUDA (skipped without a device): the BlockMask of a reordered row built on
the GPU equals create_block_mask of the permuted reference, and compiled FlexAttention on the
reordered row gives the sequence-order outputs once put back in order."""
from __future__ import annotations

import pytest
import torch

from test_gist_masks import assert_same
from test_gist_reorder import dense_block_mask, synthetic_sample
from thinkc.gist.block_mask import gist_block_mask
from thinkc.gist.reorder import reorder_sample, restore_order
from thinkc.gist.rule import GistFlags, additive_mask, reference_mask

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("thought_len", [(20, 80), (300, 800)])
def test_reordered_block_mask_on_cuda_equals_the_permuted_reference(thought_len):
    s = synthetic_sample(2048, thought_len)
    r = reorder_sample(s)
    bm = gist_block_mask(r.meta.batched().to("cuda"), 128)
    got = tuple(t.cpu() for t in (bm.kv_num_blocks, bm.kv_indices, bm.full_kv_num_blocks, bm.full_kv_indices))
    assert_same(got, dense_block_mask(reference_mask(r.meta), 128), "cuda reordered")


def test_flex_on_the_reordered_row_gives_the_sequence_order_outputs():
    from torch.nn.attention.flex_attention import flex_attention

    from thinkc.bench.mask import synthetic_layout
    from thinkc.gist.sample import GistSample

    meta = synthetic_layout(1500, (20, 80), seed=4, flags=GistFlags(see_current=True, diagonal=True))
    L = len(meta)
    s = GistSample(torch.zeros(L, dtype=torch.long), torch.zeros(L, dtype=torch.long), torch.arange(L), meta)
    r = reorder_sample(s)
    perm = r.meta.pos.cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(1, h, L, 64, device="cuda", generator=g) for h in (4, 2, 2))
    flex = torch.compile(flex_attention, dynamic=False)
    out = flex(q[:, :, perm], k[:, :, perm], v[:, :, perm], block_mask=gist_block_mask(r.meta.batched().to("cuda")),
               enable_gqa=True)
    out = restore_order(out.transpose(1, 2), perm).transpose(1, 2)
    dense = additive_mask(reference_mask(meta.batched().to("cuda")), torch.float32)[:, None]
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense, enable_gqa=True)
    torch.testing.assert_close(out, want, atol=2e-4, rtol=2e-4)
