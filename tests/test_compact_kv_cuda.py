"""compact_kv CUDA kernel (run on the GPU machine): equal to the C++ op on random keep sets, vectorised
and unvectorisable rows, misaligned bases, more caches than one launch takes, invalid rows left
untouched without a host sync, CUDA-graph capture, and the bench at a small size."""
import random

import pytest
import torch

from thinkc.ops import backend
from thinkc.ops.compact import compact_kv, compact_kv_reference, ranges_from_keep
from test_compact_kv import random_keep  # tests/ is on sys.path under pytest

pytestmark = pytest.mark.cuda


def cuda_vs_cpu(caches_cpu, keep, lengths_cpu):
    ranges, offsets = ranges_from_keep(keep)
    ref = [c.clone() for c in caches_cpu]
    l_ref = lengths_cpu.clone()
    compact_kv_reference(ref, ranges, offsets, l_ref)
    gpu = [c.cuda() for c in caches_cpu]
    l_gpu = lengths_cpu.cuda()
    torch.ops.thinkc.compact_kv(gpu, ranges.cuda(), offsets.cuda(), l_gpu)
    torch.cuda.synchronize()
    assert torch.equal(l_gpu.cpu(), l_ref)
    for g, r in zip(gpu, ref):
        assert torch.equal(g.cpu(), r)


def test_cuda_kernel_is_registered():
    assert backend("compact_kv", "cuda") == "cuda", "thinkc._C was built without the CUDA kernels"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [128, 64, 6, 5])
def test_random_keep_sets_equal_cpu(dtype, head_dim):
    rng = random.Random(f"cuda-{dtype}-{head_dim}")
    for trial in range(4):
        B, H, C = rng.randint(1, 6), rng.randint(1, 4), rng.choice([1, 17, 300, 1500])
        lens = [rng.randint(0, C) for _ in range(B)]
        keep = random_keep(rng, lens)
        g = torch.Generator().manual_seed(trial)
        caches = [torch.randn(B, H, C, head_dim, generator=g).to(dtype) for _ in range(4)]
        cuda_vs_cpu(caches, keep, torch.tensor(lens, dtype=torch.int32))


def test_long_overlapping_shift_and_many_caches():
    # 70 caches: more than one launch's pointer table; row 0 shifts a long run left by one token.
    B, H, C, D = 2, 2, 4096, 128
    g = torch.Generator().manual_seed(0)
    caches = [torch.randn(B, H, C, D, generator=g).to(torch.bfloat16) for _ in range(70)]
    keep = [[(1, 4096)], [(0, 100), (101, 102), (2000, 4000)]]
    cuda_vs_cpu(caches, keep, torch.tensor([4096, 4001], dtype=torch.int32))


def test_misaligned_base_falls_back_to_narrow_vectors():
    B, H, C, D = 2, 2, 64, 8
    storage = torch.randn(B * H * C * D + 1, device="cuda")
    cache = storage[1:].view(B, H, C, D)  # contiguous, 4-byte aligned only
    before = cache.cpu()
    keep = [[(3, 40)], [(0, 2), (10, 64)]]
    ranges, offsets = ranges_from_keep(keep, "cuda")
    lengths = torch.tensor([64, 64], dtype=torch.int32, device="cuda")
    torch.ops.thinkc.compact_kv([cache], ranges, offsets, lengths)
    ref = [before.clone()]
    compact_kv_reference(ref, *ranges_from_keep(keep), torch.tensor([64, 64], dtype=torch.int32))
    assert torch.equal(cache.cpu(), ref[0])


def test_invalid_row_left_untouched_without_sync():
    B, H, C, D = 3, 1, 32, 16
    caches = [torch.randn(B, H, C, D, device="cuda") for _ in range(2)]
    before = [c.clone() for c in caches]
    keep = [[(0, 4), (2, 8)], [(5, 10)], [(0, 40)]]  # rows 0 (overlap) and 2 (past length) invalid
    ranges, offsets = ranges_from_keep(keep, "cuda")
    lengths = torch.tensor([32, 20, 32], dtype=torch.int32, device="cuda")
    compact_kv(caches, (ranges, offsets), lengths, check=False)
    assert lengths.tolist() == [32, 5, 32]
    for c, b in zip(caches, before):
        assert torch.equal(c[0], b[0]) and torch.equal(c[2], b[2])
        assert torch.equal(c[1, :, :5], b[1, :, 5:10]) and not c[1, :, 5:20].any()
    with pytest.raises(ValueError, match="outside|overlapping"):
        compact_kv(caches, (ranges, offsets), lengths)  # check=True raises (before any kernel runs)


def test_cuda_graph_capture_and_replay():
    B, H, C, D = 4, 2, 512, 128
    g = torch.Generator().manual_seed(5)
    src = [torch.randn(B, H, C, D, generator=g).to(torch.bfloat16).cuda() for _ in range(6)]
    caches = [s.clone() for s in src]
    keep = random_keep(random.Random(9), [C] * B)
    ranges, offsets = ranges_from_keep(keep, "cuda")
    lengths = torch.full((B,), C, dtype=torch.int32, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the graph
        compact_kv(caches, (ranges, offsets), lengths, check=False)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    for c, s in zip(caches, src):
        c.copy_(s)
    lengths.fill_(C)
    with torch.cuda.graph(graph):
        compact_kv(caches, (ranges, offsets), lengths, check=False)
    for c, s in zip(caches, src):
        c.copy_(s)
    lengths.fill_(C)
    graph.replay()
    torch.cuda.synchronize()
    ref = [s.cpu() for s in src]
    l_ref = torch.full((B,), C, dtype=torch.int32)
    compact_kv_reference(ref, *ranges_from_keep(keep), l_ref)
    assert torch.equal(lengths.cpu(), l_ref)
    assert all(torch.equal(c.cpu(), r) for c, r in zip(caches, ref))


def test_static_cache_on_cuda_matches_cpu():
    from thinkc.infer.cache import StaticGistCache

    outs = []
    for dev in ("cpu", "cuda"):
        cache = StaticGistCache(num_layers=2, batch_size=2, kv_heads=2, head_dim=64, capacity=128, device=dev)
        k = torch.randn(2, 2, 40, 64, generator=torch.Generator().manual_seed(1)).to(dev)
        cache.begin_step([40, 25])
        for i in range(2):
            cache.update(k + i, k - i, i)
        cache.compact([[(0, 10), (20, 40)], [(5, 25)]])
        outs.append(([b.cpu() for b in cache.buffers()], cache.lengths.cpu()))
    assert torch.equal(outs[0][1], outs[1][1])
    assert all(torch.equal(a, b) for a, b in zip(outs[0][0], outs[1][0]))


def test_bench_small_cuda():
    from thinkc.bench.compact import run_compact_bench

    rows = run_compact_bench(batch=2, layers=2, kv_heads=2, head_dim=128, tokens=2048, dtype=torch.bfloat16,
                             device="cuda", repeats=2, warmup=1)
    assert rows[0]["backend"] == "cuda" and all(r["match"] for r in rows)
