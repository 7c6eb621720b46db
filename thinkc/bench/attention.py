"""`thinkc bench attention`: gist attention forward(+backward) for one 7B-shaped layer
(28 query heads, 4 KV heads, head_dim 128): FlexAttention with thinkc's block-sparse BlockMask vs
SDPA with the dense reference mask, side by side in one run. Also measures how many tiles a
physical reordering [prompt | cache tokens | thoughts] (logical positions unchanged) would leave
to compute."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from thinkc.bench.common import time_fn
from thinkc.gist.rule import GistMeta, Role, additive_mask, reference_mask


def computed_tile_fraction(visible: torch.Tensor, block: int) -> float:
    """Share of (q-block, kv-block) tiles with at least one visible pair: what a block-sparse
    kernel must compute. visible: bool [L, L]."""
    L = visible.shape[-1]
    nb = -(-L // block)
    pad = nb * block - L
    v = F.pad(visible, (0, pad, 0, pad))
    tiles = v.view(nb, block, nb, block).any(dim=3).any(dim=1)
    return tiles.float().mean().item()


def reorder_permutation(meta: GistMeta) -> torch.Tensor:
    """Physical order [prompt | cache tokens and [o] | everything else], stable within groups."""
    role = meta.role.long().flatten()
    group = torch.full_like(role, 2)
    group[role == Role.PROMPT] = 0
    group[(role == Role.CACHE) | (role == Role.OUTPUT)] = 1
    return torch.sort(group * role.numel() + torch.arange(role.numel()), stable=True).indices


def reorder_study(meta: GistMeta, block: int = 128) -> dict:
    vis = reference_mask(meta)[0]
    perm = reorder_permutation(meta)
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
    flex = torch.compile(flex_attention, dynamic=False)
    rows = []
    for L in lengths:
        meta = synthetic_layout(L, thought_len=thought_len, seed=0).batched().to(device)
        bm = gist_block_mask(meta, block_size=block_size)
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

        run_flex = step(lambda: flex(q, k, v, block_mask=bm, enable_gqa=True))
        run_sdpa = step(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=dense, enable_gqa=True))
        row = {"L": L, "pass": "fwd+bwd" if backward else "fwd", "block_sparsity": round(block_sparsity(bm), 4)}
        for name, fn in (("flex_blockmask", run_flex), ("sdpa_dense", run_sdpa)):
            if on_cuda:
                torch.cuda.reset_peak_memory_stats()
            row[f"{name}_ms"] = time_fn(fn, device, repeats, warmup) * 1e3
            if on_cuda:
                row[f"{name}_peak_GiB"] = torch.cuda.max_memory_allocated() / 2**30
        row["speedup"] = row["sdpa_dense_ms"] / row["flex_blockmask_ms"]
        rows.append(row)
        del dense, q, k, v
    return rows
