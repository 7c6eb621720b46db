"""paged_attention: the C++ op and the pure-torch fallback vs the naive reference on random paged pools
(shuffled pages, null-page table entries, GQA Hq=4/H=2 and Hq=H, W = 1, 7 and 40 (> one query chunk),
kv_len not a multiple of page_size, hidden keys as finfo.min and -inf); equal to SDPA on the gathered
logical K / V; slots no query sees filled with NaN / huge values and garbage page numbers behind hidden
pages change nothing; fully hidden queries give zeros (SDPA: the mean of V); fp32, bf16, fp16;
non-contiguous q / mask / table; bad arguments raise ValueError. The last test prints the decode
timing of the op against gather + SDPA (the engine's path) and the fallback."""
import random
import statistics
import time

import pytest
import torch
import torch.nn.functional as F

from thinkc.ops import backend
from thinkc.ops.paged_attention import (check_paged_attention_args, paged_attention, paged_attention_reference,
                                        paged_attention_torch)

HAS_CPP = backend("paged_attention", "cpu") == "cpp"
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 3e-3}


def make_case(rng: random.Random, b=5, Hq=4, H=2, W=1, D=32, page_size=16, kv_len=45, dtype=torch.float32,
              seed=0, hidden_rows=()):
    """Keyword arguments of the op: each row owns shuffled pages for its length (other table entries
    name the null page); the mask hides the keys past each row's length and ~15 % holes, as finfo.min or
    -inf at random, and every key of the (row, position) pairs in `hidden_rows`; a few pages belong to nobody."""
    lens = [rng.randint(1, kv_len) if kv_len else 0 for _ in range(b)]
    used = [-(-n // page_size) for n in lens]
    max_pages = max(1, -(-kv_len // page_size)) + rng.randint(0, 2)
    n_pages = sum(used) + rng.randint(1, 3)
    free = rng.sample(range(n_pages), n_pages)
    table = [[free.pop() for _ in range(u)] + [n_pages] * (max_pages - u) for u in used]
    g = torch.Generator().manual_seed(seed)
    P = (n_pages + 1) * page_size
    k, v = (torch.randn(1, H, P, D, generator=g).to(dtype) for _ in range(2))
    q = torch.randn(b, Hq, W, D, generator=g).to(dtype)
    mask = (torch.rand(b, 1, W, kv_len, generator=g) * 4 - 2).to(dtype)
    hide = torch.rand(b, 1, W, kv_len, generator=g) < 0.15
    hide |= torch.arange(kv_len)[None, None, None, :] >= torch.tensor(lens)[:, None, None, None]
    for i, w in hidden_rows:
        hide[i, 0, w] = True
    low = torch.where(torch.rand(b, 1, W, kv_len, generator=g) < 0.5, torch.finfo(dtype).min, float("-inf"))
    mask = torch.where(hide, low.to(dtype), mask)
    return dict(q=q, k_pool=k, v_pool=v, block_table=torch.tensor(table, dtype=torch.int32), page_size=page_size,
                kv_len=kv_len, mask=mask, scale=D ** -0.5)


def impls():
    out = {"torch": paged_attention_torch, "api": paged_attention}
    if HAS_CPP:
        out["cpp"] = torch.ops.thinkc.paged_attention
    return out


def call(fn, case):
    c = case
    return fn(c["q"], c["k_pool"], c["v_pool"], c["block_table"], c["page_size"], c["kv_len"], c["mask"], c["scale"])


def assert_close(got, want, dtype, what):
    assert got.dtype == want.dtype and got.shape == want.shape and got.is_contiguous(), what
    assert torch.isfinite(got).all(), f"{what}: non-finite output"
    tol = TOL[dtype]
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("W", [1, 7, 40])
@pytest.mark.parametrize("heads", [(4, 2), (2, 2)])
@pytest.mark.parametrize("page_size,kv_len", [(16, 45), (5, 37)])
def test_random_pools_agree_with_reference(dtype, W, heads, page_size, kv_len):
    rng = random.Random(hash((str(dtype), W, heads, page_size)) % 1000)
    case = make_case(rng, Hq=heads[0], H=heads[1], W=W, page_size=page_size, kv_len=kv_len, dtype=dtype,
                     seed=rng.randint(0, 99), hidden_rows=[(1, W - 1)])
    want = call(paged_attention_reference, case)
    assert not want[1, :, W - 1].any() and want.abs().sum() > 0
    for name, fn in impls().items():
        assert_close(call(fn, case), want, dtype, f"{name} W={W} heads={heads} ps={page_size}")


def gathered(case):
    """Logical K, V [b, H, kv_len, D] through the block table (every entry names a page of the pool)."""
    ps, t = case["page_size"], case["block_table"].tolist()
    out = []
    for pool in (case["k_pool"], case["v_pool"]):
        rows = [pool[0][:, [r[j // ps] * ps + j % ps for j in range(case["kv_len"])]] for r in t]
        out.append(torch.stack(rows))
    return out


@pytest.mark.parametrize("heads", [(4, 2), (3, 3)])
def test_equals_sdpa_on_the_gathered_rows(heads):
    case = make_case(random.Random(3), Hq=heads[0], H=heads[1], W=7, kv_len=61, seed=4, hidden_rows=[(2, 3)])
    K, V = gathered(case)
    sdpa = F.scaled_dot_product_attention(case["q"], K, V, attn_mask=case["mask"], scale=case["scale"],
                                          enable_gqa=True)
    sees = (case["mask"] > torch.finfo(torch.float32).min).any(-1)[:, 0]  # [b, W]
    for name, fn in impls().items():
        out = call(fn, case)
        torch.testing.assert_close(out.permute(0, 2, 1, 3)[sees], sdpa.permute(0, 2, 1, 3)[sees], atol=1e-5, rtol=1e-5)
        assert not out[2, :, 3].any(), f"{name}: a query that sees no key must give zeros"


def fill_unseen(case, value):
    """Every pool slot that no query of its row sees gets `value` (K and V): hidden keys' slots, the null
    page, pages nobody owns."""
    ps, t = case["page_size"], case["block_table"].tolist()
    seen = (case["mask"] > torch.finfo(case["mask"].dtype).min).any(2)[:, 0]  # [b, kv_len]
    keep = torch.zeros(case["k_pool"].shape[2], dtype=torch.bool)
    for i, row in enumerate(seen.tolist()):
        for j, s in enumerate(row):
            keep[t[i][j // ps] * ps + j % ps] |= s
    out = dict(case)
    for name in ("k_pool", "v_pool"):
        pool = case[name].clone()
        pool[0][:, ~keep] = value
        out[name] = pool
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_garbage_in_unseen_slots_changes_nothing(dtype):
    case = make_case(random.Random(5), W=7, page_size=4, kv_len=30, dtype=dtype, seed=6, hidden_rows=[(0, 2)])
    for name, fn in impls().items():
        clean = call(fn, case)
        for value in (float("nan"), 1e30, float("-inf")):
            dirty = fill_unseen(case, value)
            assert torch.isnan(dirty["k_pool"]).any() or value != value or (dirty["k_pool"] == value).any()
            assert torch.equal(call(fn, dirty), clean), f"{name}: garbage {value} leaked into the output"


def test_garbage_page_numbers_behind_hidden_pages_are_never_read():
    case = make_case(random.Random(7), b=4, W=1, page_size=4, kv_len=40, seed=8)
    seen = (case["mask"] > torch.finfo(torch.float32).min)[:, 0, 0]  # [b, kv_len]
    page_seen = seen.view(4, 10, 4).any(-1)
    table = case["block_table"].clone()
    n_phys = case["k_pool"].shape[2] // 4
    junk = torch.tensor([-1, n_phys, 10 ** 6, -(10 ** 6)], dtype=torch.int32)
    table[:, :10] = torch.where(page_seen, table[:, :10], junk.repeat(10)[:10])
    assert (table != case["block_table"]).any()
    for name, fn in impls().items():
        assert torch.equal(call(fn, {**case, "block_table": table}), call(fn, case)), name


def test_a_visible_key_on_a_page_outside_the_pool_raises():
    case = make_case(random.Random(9), b=3, kv_len=40, seed=1)
    table = case["block_table"].clone()
    table[1, 0] = case["k_pool"].shape[2] // 16  # one past the null page; key 0 of row 1 is visible
    mask = case["mask"].clone()
    mask[1, 0, 0, 0] = 0
    for name, fn in impls().items():
        with pytest.raises(ValueError, match=r"row 1: block_table\[1, 0\]"):
            call(fn, {**case, "block_table": table, "mask": mask})


def test_fully_hidden_queries_give_zeros_where_sdpa_averages():
    case = make_case(random.Random(11), b=3, W=2, kv_len=20, seed=2, hidden_rows=[(0, 0), (2, 1)])
    case["mask"][0, 0, 0] = torch.finfo(torch.float32).min  # all finfo.min: SDPA averages V
    case["mask"][2, 0, 1] = float("-inf")  # all -inf: SDPA gives NaN (or 0, by backend)
    K, V = gathered(case)
    sdpa = F.scaled_dot_product_attention(case["q"], K, V, attn_mask=case["mask"], scale=case["scale"],
                                          enable_gqa=True)
    torch.testing.assert_close(sdpa[0, :, 0], V[0].mean(1).repeat_interleave(2, 0), atol=1e-5, rtol=1e-5)
    for name, fn in {**impls(), "reference": paged_attention_reference}.items():
        out = call(fn, case)
        assert not out[0, :, 0].any() and not out[2, :, 1].any(), name
        assert out[1].abs().sum() > 0 and out[0, :, 1].abs().sum() > 0, name


def test_kv_len_zero_gives_zeros():
    case = make_case(random.Random(12), b=2, W=3, kv_len=0, seed=3)
    for name, fn in impls().items():
        out = call(fn, case)
        assert out.shape == (2, 4, 3, 32) and not out.any(), name


@pytest.mark.skipif(not HAS_CPP, reason="thinkc._C not built")
@pytest.mark.parametrize("D", [32, 64, 128, 20])
def test_cpp_fp16_and_every_head_dim_copy(D):
    for dtype in (torch.float16, torch.float32):
        case = make_case(random.Random(D), W=3, D=D, page_size=8, kv_len=50, dtype=dtype, seed=D)
        assert_close(call(torch.ops.thinkc.paged_attention, case), call(paged_attention_reference, case), dtype,
                     f"D={D} {dtype}")


def test_non_contiguous_inputs():
    case = make_case(random.Random(13), b=3, W=5, kv_len=33, seed=5)
    want = call(paged_attention_reference, case)
    wide_mask = torch.full((3, 1, 5, 40), 7.0)
    wide_mask[..., 2:35] = case["mask"]
    wide_table = torch.zeros(3, case["block_table"].shape[1] + 3, dtype=torch.int32)
    wide_table[:, 1:-2] = case["block_table"]
    q_t = case["q"].transpose(1, 2).contiguous().transpose(1, 2)
    odd = {**case, "q": q_t, "mask": wide_mask[..., 2:35], "block_table": wide_table[:, 1:-2]}
    assert not (odd["q"].is_contiguous() or odd["mask"].is_contiguous() or odd["block_table"].is_contiguous())
    for name, fn in impls().items():
        assert_close(call(fn, odd), want, torch.float32, name)


def bad_cases():
    case = make_case(random.Random(14), b=2, W=2, kv_len=20, seed=7)
    c = case
    return case, [
        ({"q": c["q"][0]}, "q must be"),
        ({"q": c["q"].double()}, "float32, bfloat16 or float16"),
        ({"k_pool": c["k_pool"].half()}, "share q's dtype"),
        ({"mask": c["mask"].bool()}, "share q's dtype"),
        ({"v_pool": c["v_pool"][:, :, :-16]}, "v_pool is"),
        ({"k_pool": c["k_pool"].expand(2, -1, -1, -1)}, r"\[1, H, P, D\]"),
        ({"k_pool": c["k_pool"].transpose(2, 3).contiguous().transpose(2, 3)}, "contiguous"),
        ({"q": c["q"][:, :3]}, "not a multiple"),
        ({"q": c["q"][..., :16]}, "head dim"),
        ({"block_table": c["block_table"].long()}, "int32"),
        ({"block_table": c["block_table"][:1]}, "int32"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": True}, "page_size"),
        ({"k_pool": c["k_pool"][:, :, 1:].contiguous(), "v_pool": c["v_pool"][:, :, 1:].contiguous()},
         "whole number of pages"),
        ({"kv_len": 10 ** 6}, "kv_len"),
        ({"kv_len": -1}, "kv_len"),
        ({"mask": c["mask"][..., :-1]}, "mask must be"),
        ({"mask": c["mask"][:, :, :1]}, "mask must be"),
        ({"scale": float("nan")}, "scale"),
        ({"scale": "0.1"}, "scale"),
    ]


@pytest.mark.parametrize("case", range(len(bad_cases()[1])))
def test_bad_arguments_raise_value_error(case):
    base, cases = bad_cases()
    change, message = cases[case]
    bad = {**base, **change}
    with pytest.raises(ValueError, match=message):
        check_paged_attention_args(**bad)
    with pytest.raises(ValueError, match=message):
        call(paged_attention, bad)


@pytest.mark.skipif(not HAS_CPP, reason="thinkc._C not built")
def test_cpp_op_checks_its_own_arguments():
    base, cases = bad_cases()
    for change, _ in cases[:11] + cases[13:18]:  # the tensor / int cases (no Python-only types)
        with pytest.raises(ValueError, match="paged_attention"):
            call(torch.ops.thinkc.paged_attention, {**base, **change})
    check_paged_attention_args(**base)


def test_threads_do_not_change_the_result():
    case = make_case(random.Random(15), b=6, W=3, kv_len=70, seed=9)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = call(paged_attention, case)
        torch.set_num_threads(2)
        two = call(paged_attention, case)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def _median_ms(fns: dict, runs=25) -> dict:
    """Median wall time of each function, the functions taking turns (a busy machine slows all alike)."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def test_decode_timing_against_gather_and_sdpa():
    """b=64, Hq=4, H=2, D=32, kv_len=560, page_size 16, fp32, one thread: prints the medians (no timing
    assertion: shared machines); checks the op still equals gather + SDPA there."""
    b, Hq, H, D, kv_len, ps = 64, 4, 2, 32, 560, 16
    n_pg = kv_len // ps
    g = torch.Generator().manual_seed(0)
    k, v = (torch.randn(1, H, (b * n_pg + 1) * ps, D, generator=g) for _ in range(2))
    table = torch.randperm(b * n_pg, generator=g).view(b, n_pg).to(torch.int32)
    q = torch.randn(b, Hq, 1, D, generator=g)
    lens = torch.randint(kv_len // 2, kv_len + 1, (b,), generator=g)
    mask = torch.where(torch.arange(kv_len) < lens[:, None], 0.0, torch.finfo(torch.float32).min)[:, None, None]
    args = (q, k, v, table, ps, kv_len, mask, D ** -0.5)
    flat = table.reshape(-1).long()

    def gather_sdpa():  # the engine's path today (pool._update_at): whole pages, then SDPA
        K, V = (x.view(H, -1, ps * D).index_select(1, flat).view(H, b, kv_len, D).transpose(0, 1) for x in (k, v))
        return F.scaled_dot_product_attention(q, K, V, attn_mask=mask, scale=D ** -0.5, enable_gqa=True)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    fns = {"gather+sdpa": gather_sdpa, "torch fallback": lambda: paged_attention_torch(*args)}
    if HAS_CPP:
        fns["cpp op"] = lambda: torch.ops.thinkc.paged_attention(*args)
    try:
        times = _median_ms(fns)
    finally:
        torch.set_num_threads(before)
    print("\npaged_attention decode b=64 Hq=4 H=2 D=32 kv_len=560 ps=16 fp32, 1 thread, median ms: "
          + ", ".join(f"{name} {ms:.3f}" for name, ms in times.items()))
    torch.testing.assert_close(paged_attention(*args), gather_sdpa(), atol=1e-5, rtol=1e-5)
