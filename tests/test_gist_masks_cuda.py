"""CUDA gist BlockMask builder == C++ op == torch fallback == create_block_mask (GPU machine only)."""
from __future__ import annotations

import pytest
import torch

from test_gist_masks import ALL_FLAGS, assert_same, layout_meta, scrambled_meta, torch_block_mask
from thinkc.gist.rule import GistFlags, GistMeta, additive_mask, reference_mask
from thinkc.ops import backend
from thinkc.ops.block_mask import build_gist_block_mask, build_gist_block_mask_torch

pytestmark = pytest.mark.cuda


def on_cuda(meta: GistMeta, block_size) -> tuple[torch.Tensor, ...]:
    out = build_gist_block_mask(meta.to("cuda"), block_size)
    assert all(t.is_cuda for t in out)
    return tuple(t.cpu() for t in out)


def test_cuda_backend_is_the_kernel():
    assert backend("build_gist_block_mask", "cuda") == "cuda", "build the extension with a CUDA torch (setup.py)"


@pytest.mark.parametrize("flags", ALL_FLAGS, ids=str)
@pytest.mark.parametrize("block_size", [16, 128, (32, 64)])
def test_cuda_equals_cpu_and_create_block_mask_on_layouts(flags, block_size):
    for seed in range(6):
        meta = layout_meta(seed, batch=3, flags=flags, exclude_continue=seed % 2 == 1, prefill_compress=seed % 3 == 0,
                           max_thoughts=8, thought_len=(1, 60))
        want = torch_block_mask(meta, block_size)
        assert_same(build_gist_block_mask(meta, block_size), want, "cpu op")
        assert_same(on_cuda(meta, block_size), want, "cuda op")
        assert_same(build_gist_block_mask_torch(meta.to("cuda"), block_size), tuple(t.cuda() for t in want),
                    "torch fallback on cuda")


@pytest.mark.parametrize("flags", ALL_FLAGS, ids=str)
def test_cuda_equals_create_block_mask_on_scrambled_metadata(flags):
    for seed in range(20):
        L = 1 + (seed * 37) % 150
        for block_size in (1, 4, 16, (2, 8)):
            meta = scrambled_meta(seed, L, batch=2, flags=flags)
            assert_same(on_cuda(meta, block_size), torch_block_mask(meta, block_size), f"seed {seed} L {L}")


@pytest.mark.parametrize("flags", [GistFlags(), GistFlags(see_current=True), GistFlags(False, True, True)], ids=str)
def test_cuda_equals_cpu_op_on_long_rows(flags):
    """Rows longer than one scan chunk (512 threads x 8 tokens), batch of differently shaped rows."""
    from thinkc.bench.mask import synthetic_layout

    rows = [synthetic_layout(32768, (20, 80), seed=1, flags=flags),
            synthetic_layout(32768, (300, 800), seed=2, flags=flags),
            synthetic_layout(32768, (20, 80), n_cache=2, seed=3, flags=flags, with_output=False)]
    meta = GistMeta(*(torch.stack(t) for t in zip(*((r.role, r.seg, r.doc, r.expire) for r in rows))), flags)
    for block_size in (128, 64):
        assert_same(on_cuda(meta, block_size), build_gist_block_mask(meta, block_size), "cuda vs cpu op")
        assert_same(on_cuda(meta, block_size), build_gist_block_mask_torch(meta, block_size), "cuda vs torch")


def test_cuda_op_does_not_synchronise():
    meta = layout_meta(5, batch=2, flags=GistFlags(see_current=True)).to("cuda")
    build_gist_block_mask(meta, 16)  # warm-up (allocator, lazy init)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        build_gist_block_mask(meta, 16)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_flex_attention_on_cuda_matches_sdpa_dense():
    from torch.nn.attention.flex_attention import flex_attention

    from thinkc.bench.mask import synthetic_layout
    from thinkc.gist.block_mask import gist_block_mask

    meta = synthetic_layout(1000, (20, 80), seed=4, flags=GistFlags(bi_directional=True)).batched().to("cuda")
    L = meta.role.shape[-1]
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 4, L, 64, device="cuda", generator=g)
    k = torch.randn(1, 2, L, 64, device="cuda", generator=g)
    v = torch.randn(1, 2, L, 64, device="cuda", generator=g)
    out = torch.compile(flex_attention, dynamic=False)(q, k, v, block_mask=gist_block_mask(meta, 128), enable_gqa=True)
    dense = additive_mask(reference_mask(meta), torch.float32)[:, None]
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense, enable_gqa=True)
    torch.testing.assert_close(out, want, atol=2e-4, rtol=2e-4)
