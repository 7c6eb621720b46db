"""`thinkc bench compact`: in-place KV compaction, the thinkc op (CUDA kernel / C++) vs the torch
gather + copy fallback, side by side on the same cache in one run.

Cache: `layers` K and V tensors [batch, kv_heads, tokens, head_dim], every row full. Keep pattern:
LightThinker-like, a kept prompt then alternating kept / dropped thought spans (32..256 tokens), each
row dropping a slightly different share around `drop_fraction` (rows compact different amounts).
Bytes counted (the same figure for both implementations): read + write of every token that moves
(the kept prefix that stays in place is not counted) + the zeroed freed tail. Each timed call starts
from full lengths (the values in the cache do not change the work). Warm-up runs are excluded;
times are medians.
"""
from __future__ import annotations

import random

import torch

from thinkc.bench.common import time_fn
from thinkc.errors import ThinkcError
from thinkc.ops import backend
from thinkc.ops.compact import compact_kv, compact_kv_torch, ranges_from_keep

PROMPT_TOKENS = 256


def keep_pattern(batch: int, tokens: int, drop_fraction: float, seed: int = 0) -> list[list[tuple[int, int]]]:
    """Per row: keep [0, prompt), then alternate kept / dropped spans; row b drops about
    drop_fraction * (0.8 .. 1.2) of its thought tokens. The prompt is at most a quarter of the
    row and spans at most half of the thought, so short caches (--tokens 256) compact too."""
    rng = random.Random(seed)
    keep = []
    prompt = min(PROMPT_TOKENS, tokens // 4)
    hi = max(2, min(256, (tokens - prompt) // 2))
    lo = max(1, min(32, hi // 2))
    for b in range(batch):
        f = min(0.95, max(0.0, drop_fraction * (0.8 + 0.4 * b / max(1, batch - 1))))
        row, t = [(0, prompt)] if prompt else [], prompt
        while t < tokens:
            span = rng.randint(lo, hi)
            kept = max(0, round(span * (1 - f)))
            if kept:
                row.append((t, min(tokens, t + kept)))
            t += span
        keep.append(row)
    return keep


def counted_bytes(keep, tokens: int, row_bytes: int, heads: int, caches: int) -> int:
    """Bytes read + written that the compaction needs (see the module docstring)."""
    total = 0
    for row in keep:
        dst, moved = 0, 0
        for s, e in row:
            if dst != s:
                moved += e - s
            dst += e - s
        total += 2 * moved + (tokens - dst)
    return total * row_bytes * heads * caches


def peak_bandwidth(device: str) -> float | None:
    """Theoretical DRAM bandwidth (bytes/s) from the device properties, when torch exposes them."""
    if not device.startswith("cuda"):
        return None
    p = torch.cuda.get_device_properties(torch.device(device))
    clock_khz, bus_bits = getattr(p, "memory_clock_rate", None), getattr(p, "memory_bus_width", None)
    if not clock_khz or not bus_bits:
        return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8  # double data rate


def run_compact_bench(batch: int = 8, layers: int = 28, kv_heads: int = 4, head_dim: int = 128, tokens: int = 8192,
                      dtype: torch.dtype = torch.bfloat16, device: str = "cpu", drop_fraction: float = 0.5,
                      repeats: int = 5, warmup: int = 1, seed: int = 0, verify: bool = True) -> list[dict]:
    """One row per implementation: time (median ms), GB/s of the counted bytes, share of the device's
    peak bandwidth (CUDA), speed-up over torch; `match` says both gave identical caches (verify=True)."""
    keep = keep_pattern(batch, tokens, drop_fraction, seed)
    if all(sum(e - s for s, e in row) == tokens for row in keep):
        raise ThinkcError(f"--tokens {tokens} with --drop-fraction {drop_fraction:g} drops nothing: there would be "
                          "nothing to time (use --tokens 64 or more and --drop-fraction > 0)")
    g = torch.Generator(device="cpu").manual_seed(seed)
    shape = (batch, kv_heads, tokens, head_dim)
    caches = [torch.randn(shape, generator=g).to(dtype=dtype, device=device) for _ in range(2 * layers)]
    ranges, offsets = ranges_from_keep(keep, device)
    lengths = torch.full((batch,), tokens, dtype=torch.int32, device=device)
    reset = lambda: lengths.fill_(tokens)  # noqa: E731

    match = None
    if verify:
        mine = [c.clone() for c in caches]
        l_mine = lengths.clone()
        compact_kv(mine, (ranges, offsets), l_mine)
        compact_kv_torch(caches, ranges, offsets, lengths)  # caches now hold the torch result
        match = torch.equal(l_mine, lengths) and all(torch.equal(a, b) for a, b in zip(mine, caches))
        del mine

    nbytes = counted_bytes(keep, tokens, head_dim * caches[0].element_size(), kv_heads, 2 * layers)
    peak = peak_bandwidth(device)
    impls = [("thinkc", backend("compact_kv", device), lambda: compact_kv(caches, (ranges, offsets), lengths, check=False)),
             ("torch gather+copy", "torch", lambda: compact_kv_torch(caches, ranges, offsets, lengths))]
    kept = sum(e - s for row in keep for s, e in row) / batch
    rows = []
    for name, which, fn in impls:
        sec = time_fn(fn, device, repeats, warmup, setup=reset)
        rows.append({"impl": name, "backend": which, "shape": f"{2 * layers}x{list(shape)}", "dtype": str(dtype).split(".")[-1],
                     "kept_tokens_mean": kept, "GB": nbytes / 1e9, "time_ms": sec * 1e3, "GB/s": nbytes / sec / 1e9,
                     "pct_peak_bw": 100 * nbytes / sec / peak if peak else None, "match": match})
    torch_ms = rows[-1]["time_ms"]
    for r in rows:
        r["speedup_vs_torch"] = torch_ms / r["time_ms"]
    return rows
