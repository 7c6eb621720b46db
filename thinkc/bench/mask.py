"""`thinkc bench mask`: building the gist BlockMask, side by side in one run:
thinkc's op (CUDA / C++ per device) and its pure-torch fallback vs torch
`create_block_mask(gist_mask_mod)` vs the dense reference mask (skipped, and said so, where it
would not fit in memory). Times are medians over repeats after warm-up, CUDA-synchronised.

Row keys: L, block (tile size), backend (what runs the op: cuda / cpp / torch), op_ms (thinkc op),
torch_ms (its pure-torch fallback), sparsity (share of tiles skipped), cbm_ms (torch
create_block_mask with gist_mask_mod), equal (op output == create_block_mask's, exactly),
dense_ms (dense reference mask), x_vs_cbm / x_vs_dense (speed-ups of the op), note."""
from __future__ import annotations

import random

import torch

from thinkc.bench.common import time_fn
from thinkc.gist.rule import GistFlags, GistMeta, Role, compute_expire


def synthetic_layout(L: int, thought_len: tuple[int, int] = (20, 80), n_cache: int = 9, seed: int = 0,
                     flags: GistFlags = GistFlags(), with_output: bool = True) -> GistMeta:
    """One row of exactly L tokens shaped like a LightThinker training sequence: a prompt, thoughts
    of `thought_len` tokens each followed by <w>, n cache tokens and [o], and an answer filling
    the rest. (20, 80) is like the synthetic task; (300, 800) like Bespoke-Stratos."""
    rng = random.Random(seed)
    roles: list[int] = []
    segs: list[int] = []
    prompt = min(L, rng.randint(64, 200))
    roles += [Role.PROMPT] * prompt
    segs += [-1] * prompt
    answer = rng.randint(30, 100)
    block = 1 + n_cache + int(with_output)  # <w>, C_i, [o]
    seg = 0
    while True:
        n = rng.randint(*thought_len)
        if len(roles) + n + block + answer > L:
            break
        roles += [Role.THOUGHT] * n + [Role.TRIGGER] + [Role.CACHE] * n_cache + [Role.OUTPUT] * int(with_output)
        segs += [seg] * (n + block)
        seg += 1
    rest = L - len(roles)
    roles += [Role.ANSWER] * rest
    segs += [-1] * rest
    role = torch.tensor([int(r) for r in roles], dtype=torch.int8)
    seg_t = torch.tensor(segs, dtype=torch.int32)
    doc = torch.zeros(L, dtype=torch.int32)
    return GistMeta(role, seg_t, doc, compute_expire(role, seg_t, doc), flags)


def _dense_fits(L: int, device: str, bytes_per_pair: int = 8) -> bool:
    """Whether a dense L x L build (a few bool/int temporaries per pair) fits in half the free memory."""
    need = bytes_per_pair * L * L
    if torch.device(device).type == "cuda":
        free = torch.cuda.mem_get_info()[0]
    else:
        try:
            with open("/proc/meminfo") as f:
                free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
        except (OSError, StopIteration):
            return L <= 16384
    return need < free / 2


def run_mask_bench(lengths=(4096, 8192, 16384, 32768), device: str = "cpu", block_size: int = 128,
                   repeats: int = 5, warmup: int = 1, thought_len: tuple[int, int] = (20, 80),
                   torch_fallback: bool = True) -> list[dict]:
    from torch.nn.attention.flex_attention import create_block_mask

    from thinkc.gist.block_mask import block_sparsity, gist_block_mask
    from thinkc.gist.mask_mod import gist_mask_mod
    from thinkc.gist.rule import reference_mask
    from thinkc.ops import backend
    from thinkc.ops.block_mask import build_gist_block_mask, build_gist_block_mask_torch

    rows = []
    for L in lengths:
        meta = synthetic_layout(L, thought_len=thought_len, seed=0).batched().to(device)
        row: dict = {"L": L, "block": block_size, "backend": backend("build_gist_block_mask", device)}
        ours = build_gist_block_mask(meta, block_size)
        row["op_ms"] = time_fn(lambda: build_gist_block_mask(meta, block_size), device, repeats, warmup) * 1e3
        if torch_fallback:
            row["torch_ms"] = time_fn(lambda: build_gist_block_mask_torch(meta, block_size), device,
                                               repeats, warmup) * 1e3
        row["sparsity"] = round(block_sparsity(gist_block_mask(meta, block_size)), 4)
        if _dense_fits(L, device):
            mod = gist_mask_mod(meta)

            def cbm():
                return create_block_mask(mod, 1, 1, L, L, device=device, BLOCK_SIZE=block_size)

            row["cbm_ms"] = time_fn(cbm, device, repeats, warmup) * 1e3
            want = cbm()
            row["equal"] = all(torch.equal(a, b) for a, b in zip(
                ours, (want.kv_num_blocks, want.kv_indices, want.full_kv_num_blocks, want.full_kv_indices)))
            row["dense_ms"] = time_fn(lambda: reference_mask(meta), device, repeats, warmup) * 1e3
            row["x_vs_cbm"] = row["cbm_ms"] / row["op_ms"]
            row["x_vs_dense"] = row["dense_ms"] / row["op_ms"]
        else:
            row["note"] = f"dense L x L build skipped: {8 * L * L / 2**30:.0f} GiB would not fit"
        rows.append(row)
    return rows
