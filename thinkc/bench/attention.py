"""`thinkc bench attention`: gist attention forward(+backward) for one 7B-shaped layer
(28 query heads, 4 KV heads, head_dim 128): FlexAttention with thinkc's block-sparse BlockMask vs
SDPA with the dense reference mask, side by side in one run, and beside them FlexAttention on the
same row physically reordered (thinkc.gist.reorder: [prompt | cache tokens | thoughts], logical
positions unchanged) and plain causal SDPA (what sft pays; flash on CUDA). Also measures how many
tiles the reordering leaves to compute."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from thinkc.bench.common import time_fn
from thinkc.errors import ThinkcError
from thinkc.gist.reorder import reorder_permutation, reorder_sample
from thinkc.gist.rule import GistMeta, additive_mask, reference_mask
from thinkc.gist.sample import GistSample


def computed_tile_fraction(visible: torch.Tensor, block: int) -> float:
    """Share of (q-block, kv-block) tiles with at least one visible pair: what a block-sparse
    kernel must compute. visible: bool [L, L]."""
    L = visible.shape[-1]
    nb = -(-L // block)
    pad = nb * block - L
    v = F.pad(visible, (0, pad, 0, pad))
    tiles = v.view(nb, block, nb, block).any(dim=3).any(dim=1)
    return tiles.float().mean().item()


def reorder_study(meta: GistMeta, block: int = 128) -> dict:
    """Tiles computed as laid out, physically reordered (thinkc.gist.reorder, every document) and
    causal, from the dense mask of one row."""
    vis = reference_mask(meta)[0]
    m = meta.batched()
    perm = reorder_permutation(GistMeta(m.role[0], m.seg[0], m.doc[0], m.expire[0], m.flags))
    return {
        "tiles_computed": computed_tile_fraction(vis, block),
        "tiles_computed_reordered": computed_tile_fraction(vis[perm][:, perm], block),
        "tiles_computed_causal": computed_tile_fraction(torch.ones_like(vis).tril(), block),
    }


def run_attention_bench(lengths=(4096, 8192, 16384), device: str = "cuda", q_heads: int = 28, kv_heads: int = 4,
                        head_dim: int = 128, dtype=torch.bfloat16, backward: bool | None = None,
                        thought_len=(20, 80), block_size: int = 128, repeats: int = 5, warmup: int = 2) -> list[dict]:
    from torch.nn.attention.flex_attention import flex_attention

    from thinkc.bench.mask import synthetic_layout
    from thinkc.gist.block_mask import block_sparsity, gist_block_mask

    on_cuda = torch.device(device).type == "cuda"
    backward = on_cuda if backward is None else backward  # flex has no CPU backward (torch 2.13)
    if backward and not on_cuda:
        raise ThinkcError("--backward needs a CUDA device: FlexAttention has no backward on CPU")
    flex = torch.compile(flex_attention, dynamic=False)
    rows = []
    for L in lengths:
        meta = synthetic_layout(L, thought_len=thought_len, seed=0).batched().to(device)
        bm = gist_block_mask(meta, block_size=block_size)
        bm_reordered = gist_block_mask(_reordered(meta).to(device), block_size=block_size)
        dense = additive_mask(reference_mask(meta), dtype)[:, None]
        g = torch.Generator(device=device).manual_seed(0)
        q = torch.randn(1, q_heads, L, head_dim, device=device, dtype=dtype, generator=g, requires_grad=backward)
        k = torch.randn(1, kv_heads, L, head_dim, device=device, dtype=dtype, generator=g, requires_grad=backward)
        v = torch.randn(1, kv_heads, L, head_dim, device=device, dtype=dtype, generator=g, requires_grad=backward)

        def step(attn):
            def go():
                out = attn()
                if backward:
                    out.sum().backward()
                return out
            return go

        runs = {"flex_blockmask": step(lambda: flex(q, k, v, block_mask=bm, enable_gqa=True)),
                "flex_reordered": step(lambda: flex(q, k, v, block_mask=bm_reordered, enable_gqa=True)),
                "sdpa_causal": step(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)),
                "sdpa_dense": step(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=dense, enable_gqa=True))}
        row = {"L": L, "pass": "fwd+bwd" if backward else "fwd", "block_sparsity": round(block_sparsity(bm), 4),
               "block_sparsity_reordered": round(block_sparsity(bm_reordered), 4)}
        for name, fn in runs.items():
            if on_cuda:
                torch.cuda.reset_peak_memory_stats()
            row[f"{name}_ms"] = time_fn(fn, device, repeats, warmup) * 1e3
            if on_cuda:
                row[f"{name}_peak_GiB"] = torch.cuda.max_memory_allocated() / 2**30
        row["speedup"] = row["sdpa_dense_ms"] / row["flex_blockmask_ms"]
        row["reordered_vs_causal"] = row["flex_reordered_ms"] / row["sdpa_causal_ms"]
        rows.append(row)
        del dense, q, k, v
    return rows


def _reordered(meta: GistMeta) -> GistMeta:
    """The one-row batch `meta` with every document physically reordered (the timing only needs its mask)."""
    m = meta.to("cpu")
    L = m.role.shape[-1]
    row = GistMeta(m.role[0], m.seg[0], m.doc[0], m.expire[0], m.flags)
    return reorder_sample(GistSample(torch.zeros(L, dtype=torch.long), torch.zeros(L, dtype=torch.long),
                                     torch.arange(L), row)).meta.batched()
