"""compact_kv: C++ op vs pure-torch fallback vs naive reference on random keep sets (overlapping
moves, empty/full keeps, rows without ranges, adjacent and empty ranges), dtypes, odd head_dim;
the freed tail is zeroed, tokens past the old length untouched, lengths updated; bad input raises."""
import random

import pytest
import torch

from thinkc.ops import backend
from thinkc.ops.compact import (check_compact_args, compact_kv, compact_kv_reference, compact_kv_torch,
                                ranges_from_keep, ranges_from_keep_mask)

needs_cpp = pytest.mark.skipif(backend("compact_kv", "cpu") != "cpp", reason="thinkc._C extension not built")


def random_keep(rng: random.Random, lengths: list[int]) -> list[list[tuple[int, int]]]:
    """Per row: a random subset of tokens as runs, sometimes split into adjacent or empty ranges."""
    keep = []
    for n in lengths:
        kind = rng.random()
        if kind < 0.1:
            keep.append([])  # row keeps nothing
            continue
        if kind < 0.2:
            keep.append([(0, n)] if n else [])  # full keep
            continue
        p = rng.choice([0.2, 0.5, 0.9])
        flags = [rng.random() < p for _ in range(n)]
        row, t = [], 0
        while t < n:
            if not flags[t]:
                t += 1
                continue
            s = t
            while t < n and flags[t]:
                t += 1
            if t - s > 2 and rng.random() < 0.3:  # adjacent ranges are legal
                cut = rng.randrange(s + 1, t)
                row += [(s, cut), (cut, t)]
            else:
                row.append((s, t))
        if row and rng.random() < 0.2:  # an empty range at a legal place
            i = rng.randrange(len(row) + 1)
            at = row[i][0] if i < len(row) else row[-1][1]
            row.insert(i, (at, at))
        keep.append(row)
    return keep


def make_caches(n: int, B: int, H: int, C: int, D: int, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, C, D, generator=g).to(dtype) for _ in range(n)]


def run_all(caches, keep, lengths):
    """(C++ when built, fallback, reference) results: lists of caches + lengths."""
    ranges, offsets = ranges_from_keep(keep)
    out = {}
    impls = {"torch": compact_kv_torch, "reference": compact_kv_reference}
    if backend("compact_kv", "cpu") == "cpp":
        impls["cpp"] = lambda c, r, o, l: torch.ops.thinkc.compact_kv(c, r, o, l)  # noqa: E741
    for name, fn in impls.items():
        cs, ls = [c.clone() for c in caches], lengths.clone()
        fn(cs, ranges, offsets, ls)
        out[name] = (cs, ls)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [8, 5])
def test_random_keep_sets_agree(dtype, head_dim):
    rng = random.Random(f"{dtype}-{head_dim}")
    for trial in range(6):
        B, H, C = rng.randint(1, 5), rng.randint(1, 3), rng.randint(1, 40)
        lens = [rng.randint(0, C) for _ in range(B)]
        keep = random_keep(rng, lens)
        caches = make_caches(3, B, H, C, head_dim, dtype, seed=trial)
        lengths = torch.tensor(lens, dtype=torch.int32)
        results = run_all(caches, keep, lengths)
        ref_caches, ref_len = results["reference"]
        expect_len = [sum(e - s for s, e in row) for row in keep]
        assert ref_len.tolist() == expect_len
        for name, (cs, ls) in results.items():
            assert torch.equal(ls, ref_len), name
            for c, r in zip(cs, ref_caches):
                assert torch.equal(c, r), (name, trial)
        # Semantics, checked directly on the reference output.
        for b, row in enumerate(keep):
            kept = torch.cat([caches[0][b, :, s:e] for s, e in row], 1) if row else caches[0][b, :, :0]
            assert torch.equal(ref_caches[0][b, :, :expect_len[b]], kept)
            assert not ref_caches[0][b, :, expect_len[b]:lens[b]].any()  # freed tail zeroed
            assert torch.equal(ref_caches[0][b, :, lens[b]:], caches[0][b, :, lens[b]:])  # untouched


@needs_cpp
def test_cpp_op_and_dispatcher_overlapping_moves():
    # Row 0: a long kept run moves left by 1 (source and destination overlap almost entirely).
    B, H, C, D = 2, 2, 64, 16
    caches = make_caches(4, B, H, C, D, torch.float32, seed=1)
    lengths = torch.tensor([64, 50], dtype=torch.int32)
    keep = [[(1, 64)], [(0, 3), (4, 5), (10, 50)]]
    results = run_all(caches, keep, lengths)
    via_api = [c.clone() for c in caches]
    l_api = lengths.clone()
    compact_kv(via_api, keep, l_api)  # dispatches to the C++ op on CPU
    assert l_api.tolist() == [63, 44]
    for c, r in zip(via_api, results["reference"][0]):
        assert torch.equal(c, r)
    assert torch.equal(via_api[0][0, :, :63], caches[0][0, :, 1:64])


def test_keep_mask_to_ranges():
    mask = torch.tensor([[1, 1, 0, 1, 0, 1, 1, 1],
                         [0, 0, 0, 0, 0, 0, 0, 0],
                         [1, 1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    lengths = torch.tensor([8, 8, 5], dtype=torch.int32)
    ranges, offsets = ranges_from_keep_mask(mask, lengths)
    assert ranges.tolist() == [[0, 2], [3, 4], [5, 8], [0, 5]]
    assert offsets.tolist() == [0, 3, 3, 4]
    assert ranges.dtype == offsets.dtype == torch.int32


def test_keep_mask_round_trip_random():
    rng = random.Random(3)
    B, C = 4, 30
    mask = torch.tensor([[rng.random() < 0.5 for _ in range(C)] for _ in range(B)])
    lengths = torch.tensor([30, 0, 17, 9], dtype=torch.int32)
    ranges, offsets = ranges_from_keep_mask(mask, lengths)
    rebuilt = torch.zeros_like(mask)
    for b in range(B):
        for s, e in ranges[offsets[b]:offsets[b + 1]].tolist():
            rebuilt[b, s:e] = True
    expect = mask & (torch.arange(C) < lengths[:, None])
    assert torch.equal(rebuilt, expect)


BAD_KEEPS = [
    ([[(0, 9)], [(0, 1)]], "outside"),              # end past the row's length (8)
    ([[(-1, 2)], [(0, 1)]], "outside"),             # negative start
    ([[(4, 6), (1, 2)], [(0, 1)]], "unsorted"),     # unsorted
    ([[(0, 4), (3, 6)], [(0, 1)]], "overlapping"),  # overlapping
    ([[(5, 3)], [(0, 1)]], "outside"),              # end before start
]


@pytest.mark.parametrize("keep,words", BAD_KEEPS)
def test_bad_ranges_raise_in_python_and_cpp(keep, words):
    caches = make_caches(2, 2, 1, 10, 4, torch.float32, seed=0)
    lengths = torch.tensor([8, 3], dtype=torch.int32)
    before = [c.clone() for c in caches]
    with pytest.raises(ValueError, match=words):
        compact_kv(caches, keep, lengths)
    if backend("compact_kv", "cpu") == "cpp":
        ranges, offsets = ranges_from_keep(keep)
        with pytest.raises((ValueError, RuntimeError), match=words):
            torch.ops.thinkc.compact_kv(caches, ranges, offsets, lengths)
    assert lengths.tolist() == [8, 3]  # nothing changed on error
    assert all(torch.equal(c, b) for c, b in zip(caches, before))


def test_bad_shapes_and_dtypes_raise():
    caches = make_caches(2, 2, 1, 10, 4, torch.float32, seed=0)
    ranges, offsets = ranges_from_keep([[(0, 1)], [(0, 1)]])
    good_len = torch.tensor([8, 3], dtype=torch.int32)
    cases = [
        (caches, ranges, offsets, good_len.long(), "int32"),
        ([caches[0], caches[1][:, :, :5].contiguous()], ranges, offsets, good_len, "match|shape"),
        ([caches[0], caches[1].half()], ranges, offsets, good_len, "match|dtype"),
        (caches, ranges, offsets[:-1], good_len, r"B\+1"),
        (caches, ranges[:, :1], offsets, good_len, r"\[R, 2\]"),
        (caches, ranges, offsets, torch.tensor([11, 3], dtype=torch.int32), "capacity"),
        ([caches[0][..., :2]], ranges, offsets, good_len, "contiguous"),
    ]
    for cs, r, o, l, words in cases:  # noqa: E741
        with pytest.raises(ValueError, match=words):
            check_compact_args(cs, r, o, l)
        if backend("compact_kv", "cpu") == "cpp":
            with pytest.raises((ValueError, RuntimeError)):
                torch.ops.thinkc.compact_kv(cs, r.int(), o.int(), l)


def test_compact_bench_small_cpu():
    from thinkc.bench.compact import counted_bytes, keep_pattern, run_compact_bench

    rows = run_compact_bench(batch=3, layers=2, kv_heads=2, head_dim=8, tokens=600, dtype=torch.float32,
                             device="cpu", drop_fraction=0.5, repeats=1, warmup=0)
    assert [r["impl"] for r in rows] == ["thinkc", "torch gather+copy"]
    keep = keep_pattern(3, 600, 0.5)
    for row in keep:  # valid, sorted, and drops roughly the asked share of the thought tokens
        assert all(0 <= s < e <= 600 for s, e in row)
        assert all(a[1] <= b[0] for a, b in zip(row, row[1:]))
        kept = sum(e - s for s, e in row)
        assert 0.2 < 1 - (kept - 256) / (600 - 256) < 0.8
    nbytes = counted_bytes(keep, 600, 8 * 4, 2, 4)
    for r in rows:
        assert r["match"] is True
        assert r["GB"] == pytest.approx(nbytes / 1e9)
        assert r["GB/s"] == pytest.approx(r["GB"] / (r["time_ms"] / 1e3))
