"""compact_kv_paged: pure-torch fallback and C++ op vs the naive per-row reference on random paged
pools (shuffled pages, garbage block-table entries past a row's pages, ranges crossing page
boundaries, empty / full keeps, empty rows, page sizes 1..16, bf16 / fp32, odd head_dim); equal to
the contiguous compact_kv on the gathered logical rows; freed logical tail zeroed, every slot outside
the rows' old logical range untouched; bad arguments raise ValueError. The CUDA kernel is compared
with the reference on the GPU machine (marked cuda)."""
import random

import pytest
import torch

from test_compact_kv import random_keep  # tests/ is on sys.path under pytest
from thinkc.ops import backend
from thinkc.ops.compact import compact_kv, ranges_from_keep
from thinkc.ops.compact_paged import (check_compact_paged_args, compact_kv_paged, compact_kv_paged_reference,
                                      compact_kv_paged_torch)

HAS_CPP = backend("compact_kv_paged", "cpu") == "cpp"


def make_pool(rng: random.Random, B: int, H: int, D: int, page_size: int, dtype: torch.dtype, max_len: int = 40,
              n_buffers: int = 3, seed: int = 0):
    """(buffers, block_table, lengths): each row owns shuffled pages for its length (sometimes one more),
    entries past them are garbage (-1, past the pool, random), and a few pages belong to nobody."""
    lens = [0 if rng.random() < 0.15 else rng.randint(0, max_len) for _ in range(B)]
    used = [-(-n // page_size) + rng.randint(0, 1) for n in lens]
    max_pages = max(used + [1]) + rng.randint(0, 2)
    n_pages = sum(used) + rng.randint(1, 3)
    free = rng.sample(range(n_pages), n_pages)
    table = []
    for u in used:
        own = [free.pop() for _ in range(u)]
        table.append(own + [rng.choice([-1, n_pages + 7, rng.randint(-99, 99)]) for _ in range(max_pages - u)])
    g = torch.Generator().manual_seed(seed)
    buffers = [torch.randn(1, H, n_pages * page_size, D, generator=g).to(dtype) for _ in range(n_buffers)]
    return buffers, torch.tensor(table, dtype=torch.int32), torch.tensor(lens, dtype=torch.int32)


def row_slots(table: torch.Tensor, page_size: int, b: int, n: int) -> list[int]:
    t = table[b].tolist()
    return [t[j // page_size] * page_size + j % page_size for j in range(n)]


def logical_rows(buf: torch.Tensor, table: torch.Tensor, page_size: int, lens: list[int]) -> torch.Tensor:
    """[B, H, max(lens), D] logical view of a paged buffer (zeros past each row's length)."""
    out = buf.new_zeros(len(lens), buf.shape[1], max(lens + [0]), buf.shape[3])
    for b, n in enumerate(lens):
        out[b, :, :n] = buf[0][:, row_slots(table, page_size, b, n)]
    return out


def run_all(buffers, table, page_size, keep, lengths):
    """{impl: (buffers, lengths)} for the reference, the torch fallback, the dispatching API and the C++ op."""
    ranges, offsets = ranges_from_keep(keep)
    impls = {"reference": compact_kv_paged_reference, "torch": compact_kv_paged_torch,
             "api": lambda bs, t, p, r, o, l: compact_kv_paged(bs, t, p, (r, o), l)}  # noqa: E741
    if HAS_CPP:
        impls["cpp"] = torch.ops.thinkc.compact_kv_paged
    out = {}
    for name, fn in impls.items():
        bs, ls = [b.clone() for b in buffers], lengths.clone()
        fn(bs, table.clone(), page_size, ranges, offsets, ls)
        out[name] = (bs, ls)
    return out


def check_semantics(before, after, table, page_size, keep, lens, new_lens):
    """After vs before for one buffer: the contiguous compact_kv on the logical rows, zeroed freed
    tails, untouched slots outside every row's [0, old length)."""
    logical = logical_rows(before, table, page_size, lens)
    expect_len = torch.tensor(lens, dtype=torch.int32)
    compact_kv([logical], keep, expect_len)
    assert new_lens.tolist() == expect_len.tolist()
    assert torch.equal(logical_rows(after, table, page_size, lens), logical)
    owned = torch.zeros(before.shape[2], dtype=torch.bool)
    for b, n in enumerate(lens):
        owned[row_slots(table, page_size, b, n)] = True
        freed = row_slots(table, page_size, b, n)[int(new_lens[b]):]
        assert not after[0][:, freed].any(), f"row {b}: freed logical tail not zeroed"
    assert torch.equal(after[0][:, ~owned], before[0][:, ~owned]), "slots outside the rows' lengths changed"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("head_dim", [8, 5])
def test_random_pools_agree_with_reference(dtype, head_dim):
    rng = random.Random(f"paged-{dtype}-{head_dim}")
    for trial in range(8):
        page_size = rng.choice([1, 3, 4, 16])
        B, H = rng.randint(1, 5), rng.randint(1, 3)
        buffers, table, lengths = make_pool(rng, B, H, head_dim, page_size, dtype, seed=trial)
        lens = lengths.tolist()
        keep = random_keep(rng, lens)
        results = run_all(buffers, table, page_size, keep, lengths)
        ref_bufs, ref_len = results["reference"]
        assert ref_len.tolist() == [sum(e - s for s, e in row) for row in keep]
        for name, (bs, ls) in results.items():
            assert torch.equal(ls, ref_len), (name, trial)
            for got, want in zip(bs, ref_bufs):
                assert torch.equal(got, want), (name, trial, page_size)
        for before, after in zip(buffers, ref_bufs):
            check_semantics(before, after, table, page_size, keep, lens, ref_len)


def test_overlapping_slides_across_shuffled_pages():
    # Row 0: 14 tokens on pages [3, 0, 2, 1] (page_size 4) slide left by one: every source but the first
    # is some other token's destination, across page boundaries. Row 1 is empty; row 2 keeps all; row 3
    # keeps nothing (its two pages end up zero); row 4 keeps runs that straddle pages.
    page_size, H, D = 4, 2, 3
    table = torch.tensor([[3, 0, 2, 1], [-1, -1, -1, -1], [5, 4, -1, 9], [7, 6, 99, -1], [8, 10, 11, -1]],
                         dtype=torch.int32)
    lengths = torch.tensor([14, 0, 6, 8, 12], dtype=torch.int32)
    keep = [[(1, 14)], [], [(0, 6)], [], [(2, 5), (6, 6), (7, 10), (11, 12)]]
    buffers = [torch.randn(1, H, 12 * page_size, D) for _ in range(2)]
    results = run_all(buffers, table, page_size, keep, lengths)
    for name, (bs, ls) in results.items():
        assert ls.tolist() == [13, 0, 6, 0, 7], name
        for before, after in zip(buffers, bs):
            old = logical_rows(before, table, page_size, lengths.tolist())
            new = logical_rows(after, table, page_size, lengths.tolist())
            assert torch.equal(new[0, :, :13], old[0, :, 1:14]), name
            assert not new[0, :, 13].any() and not new[3].any(), name
            assert torch.equal(new[2], old[2]), name
            assert torch.equal(new[4, :, :7], torch.cat([old[4, :, 2:5], old[4, :, 7:10], old[4, :, 11:12]], 1))
            assert not after[0][:, 6 * page_size:8 * page_size].any(), name  # row 3's pages, whole and zero
            past_row_2 = slice(4 * page_size + 2, 5 * page_size)  # row 2's second page past its length 6
            assert torch.equal(after[0][:, past_row_2], before[0][:, past_row_2]), name
        check_semantics(buffers[0], bs[0], table, page_size, keep, lengths.tolist(), ls)


@pytest.mark.skipif(not HAS_CPP, reason="thinkc._C extension not built")
def test_api_dispatches_to_cpp_and_checks_in_cpp():
    assert backend("compact_kv_paged", "cpu") == "cpp"
    buffers = [torch.randn(1, 1, 8, 2)]
    table = torch.tensor([[0, 1]], dtype=torch.int32)
    with pytest.raises((ValueError, RuntimeError), match="used by this row"):  # C++'s own check (no Python check)
        compact_kv_paged(buffers, torch.tensor([[1, 1]], dtype=torch.int32), 4, [[(0, 2)]],
                         torch.tensor([8], dtype=torch.int32), check=False)
    lengths = torch.tensor([8], dtype=torch.int32)
    compact_kv_paged(buffers, table, 4, [[(3, 8)]], lengths, check=False)
    assert lengths.tolist() == [5]


def bad_cases():
    """(kwargs overrides, regex) for compact_kv_paged on a 2-row pool of 5 pages of 4 slots."""
    buf = torch.randn(1, 2, 20, 3)
    table = torch.tensor([[0, 3], [1, -1]], dtype=torch.int32)
    lengths = torch.tensor([7, 3], dtype=torch.int32)
    keep = [[(0, 2), (4, 7)], [(1, 3)]]
    base = dict(buffers=[buf, buf.clone()], block_table=table, page_size=4, keep=keep, lengths=lengths)
    cases = [
        (dict(buffers=[]), "empty"),
        (dict(buffers=[buf.view(2, 1, 20, 3)]), r"\[1, H"),
        (dict(buffers=[buf, buf[:, :1].clone()]), "must match"),
        (dict(buffers=[buf, buf.half()]), "must match"),
        (dict(buffers=[buf.transpose(1, 3).contiguous().transpose(1, 3)]), "contiguous"),
        (dict(page_size=0), "page_size"),
        (dict(page_size=3), "whole number of pages"),
        (dict(block_table=table.long()), "int32"),
        (dict(block_table=table[0]), r"\[B, max_pages\]"),
        (dict(lengths=lengths.long()), "int32"),
        (dict(lengths=torch.tensor([9, 3], dtype=torch.int32)), "capacity"),
        (dict(keep=[[(0, 8)], [(1, 3)]]), "outside"),
        (dict(keep=[[(4, 7), (0, 2)], [(1, 3)]]), "unsorted"),
        (dict(keep=([[0, 2]], torch.tensor([0, 1], dtype=torch.int32))), r"B\+1"),
        (dict(block_table=torch.tensor([[0, 5], [1, -1]], dtype=torch.int32)), r"outside \[0, n_pages=5\)"),
        (dict(block_table=torch.tensor([[0, -2], [1, -1]], dtype=torch.int32)), "outside"),
        (dict(block_table=torch.tensor([[0, 1], [1, -1]], dtype=torch.int32)), "used twice"),
        (dict(block_table=torch.tensor([[2, 2], [1, -1]], dtype=torch.int32)), "used twice"),
    ]
    return base, cases


@pytest.mark.parametrize("case", range(len(bad_cases()[1])))
def test_bad_arguments_raise_value_error(case):
    base, cases = bad_cases()
    override, words = cases[case]
    args = {**base, **override}
    if isinstance(args["keep"], tuple):
        args["keep"] = (torch.tensor(args["keep"][0], dtype=torch.int32), args["keep"][1])
    before = [b.clone() for b in args["buffers"]]
    lengths_before = args["lengths"].clone()
    with pytest.raises(ValueError, match=words) as info:
        compact_kv_paged(**args)
    assert str(info.value).startswith("compact_kv_paged:")
    assert all(torch.equal(a, b) for a, b in zip(args["buffers"], before))
    assert torch.equal(args["lengths"], lengths_before)
    if HAS_CPP and args["buffers"] and args["page_size"] != 0:
        ranges, offsets = (args["keep"] if isinstance(args["keep"], tuple) else ranges_from_keep(args["keep"]))
        with pytest.raises((ValueError, RuntimeError)):
            torch.ops.thinkc.compact_kv_paged(args["buffers"], args["block_table"], args["page_size"], ranges,
                                              offsets, args["lengths"])
        assert all(torch.equal(a, b) for a, b in zip(args["buffers"], before))


def test_valid_arguments_pass_the_check():
    base, _ = bad_cases()
    ranges, offsets = ranges_from_keep(base["keep"])
    check_compact_paged_args(base["buffers"], base["block_table"], 4, ranges, offsets, base["lengths"])


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("head_dim", [128, 6, 5])
def test_cuda_op_equals_reference(dtype, head_dim):
    assert backend("compact_kv_paged", "cuda") == "cuda", "thinkc._C was built without the paged CUDA kernel"
    rng = random.Random(f"paged-cuda-{dtype}-{head_dim}")
    for trial in range(5):
        page_size = rng.choice([1, 5, 16, 64])
        buffers, table, lengths = make_pool(rng, rng.randint(1, 6), rng.randint(1, 4), head_dim, page_size, dtype,
                                            max_len=rng.choice([17, 300, 1500]), n_buffers=4, seed=trial)
        keep = random_keep(rng, lengths.tolist())
        ranges, offsets = ranges_from_keep(keep)
        ref, l_ref = [b.clone() for b in buffers], lengths.clone()
        compact_kv_paged_reference(ref, table, page_size, ranges, offsets, l_ref)
        gpu, l_gpu = [b.cuda() for b in buffers], lengths.cuda()
        compact_kv_paged(gpu, table.cuda(), page_size, keep, l_gpu)
        torch.cuda.synchronize()
        assert torch.equal(l_gpu.cpu(), l_ref)
        for got, want in zip(gpu, ref):
            assert torch.equal(got.cpu(), want), (trial, page_size)


@pytest.mark.cuda
def test_cuda_long_shift_many_buffers_and_invalid_row():
    # 70 buffers: more than one launch's pointer table. Row 0 shifts 4095 tokens left by one through
    # reversed pages; row 1 has a page number past the pool and must be left untouched (check=False).
    page_size, n_pages = 16, 300
    table = torch.tensor([list(range(255, -1, -1)), [256, 257, 999] + [-1] * 253], dtype=torch.int32)
    lengths = torch.tensor([4096, 40], dtype=torch.int32)
    g = torch.Generator().manual_seed(0)
    buffers = [torch.randn(1, 2, n_pages * page_size, 64, generator=g).to(torch.bfloat16) for _ in range(70)]
    keep = [[(1, 4096)], [(0, 10)]]
    gpu, l_gpu = [b.cuda() for b in buffers], lengths.cuda()
    compact_kv_paged(gpu, table.cuda(), page_size, keep, l_gpu, check=False)
    torch.cuda.synchronize()
    assert l_gpu.tolist() == [4095, 40]
    ref, l_ref = [b.clone() for b in buffers], torch.tensor([4096, 0], dtype=torch.int32)
    compact_kv_paged_reference(ref, table, page_size, *ranges_from_keep([[(1, 4096)], []]), l_ref)
    for got, want, before in zip(gpu, ref, buffers):
        got = got.cpu()
        assert torch.equal(got[0, :, :256 * page_size], want[0, :, :256 * page_size])
        assert torch.equal(got[0, :, 256 * page_size:], before[0, :, 256 * page_size:])  # row 1 untouched
