"""Fast gist-mask paths equal the reference rule exactly (thinkc/gist/rule.py):
mask_mod, the BlockMask builder (C++ op, torch fallback) vs torch's create_block_mask, the dense
mask re-expanded from the BlockMask, packing, and FlexAttention vs SDPA with the dense mask."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.attention.flex_attention import create_block_mask, create_mask

from thinkc.gist.block_mask import block_sparsity, gist_block_mask
from thinkc.gist.mask_mod import gist_mask_mod
from thinkc.gist.packing import first_fit, pack_samples
from thinkc.gist.rule import NEVER, GistFlags, GistMeta, Role, additive_mask, compute_expire, reference_mask
from thinkc.gist.sample import IGNORE_INDEX, GistSample
from thinkc.ops import backend, extension_status
from thinkc.ops.block_mask import build_gist_block_mask, build_gist_block_mask_torch

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALL_FLAGS = [GistFlags(sc, bi, dg) for sc in (False, True) for bi in (False, True) for dg in (False, True)]


# ---------------------------------------------------------------- layouts (plain functions of a seed,
# so the CUDA test file can reuse them without hypothesis)

def layout_row(rng: random.Random, n_docs: int = 2, max_thoughts: int = 4, thought_len=(1, 12),
               prefill_compress: bool = True) -> tuple[list, list, list]:
    """Roles / segs / docs of one row in the LightThinker layout: per document a prompt (plain, or
    compressed sentences as in `aug`: n cache tokens each, template text between), thoughts + <w> +
    instruction + n cache tokens + optional [o], maybe an unfinished thought, an answer, maybe a
    recovery segment (recover mode); trailing padding. Segment ids unique in the row."""
    n_cache = rng.randint(1, 4)
    with_output = rng.random() < 0.7  # AnLLM: no [o]
    n_instr = rng.choice([0, 0, 2])
    roles, segs, docs = [], [], []
    seg = 0

    def add(role, n, s, d):
        roles.extend([int(role)] * n)
        segs.extend([s] * n)
        docs.extend([d] * n)

    for d in range(n_docs):
        start, closed = len(roles), []
        if rng.random() < 0.3:  # `aug`: prompt sentences are compressed too (cache tokens only)
            for _ in range(rng.randint(1, 3)):
                add(Role.PROMPT, rng.randint(0, 2), -1, d)  # template text
                add(Role.PROMPT, rng.randint(1, 6), seg, d)
                add(Role.CACHE if prefill_compress else Role.CACHE_PLAIN, n_cache, seg, d)
                seg += 1
        add(Role.PROMPT, rng.randint(1, 8), -1, d)
        for _ in range(rng.randint(0, max_thoughts)):
            add(Role.THOUGHT, rng.randint(*thought_len), seg, d)
            add(Role.TRIGGER, 1, seg, d)
            add(Role.INSTR, n_instr, seg, d)
            add(Role.CACHE, n_cache, seg, d)
            add(Role.OUTPUT, int(with_output), seg, d)
            closed.append(seg)
            seg += 1
        if rng.random() < 0.3:  # an unfinished thought (no cache tokens yet: never expires)
            add(Role.THOUGHT, rng.randint(1, 5), seg, d)
            seg += 1
        add(Role.ANSWER, rng.randint(0, 6), -1, d)
        if not closed:  # plain prefill never closed by a thought: the last prompt block keeps its flags
            _close_plain_prefill(roles, segs, start)
        if closed and rng.random() < 0.4:  # recover: <|recover|>, copies of the first k thoughts, EOS
            add(Role.RECOVER, 1, -1, d)
            for s in closed[:rng.randint(0, len(closed))]:
                add(Role.RECOVER, rng.randint(1, 4), s, d)
            add(Role.RECOVER, 1, -1, d)
    add(Role.PAD, rng.randint(0, 9), -1, -1)
    return roles, segs, docs


def _close_plain_prefill(roles: list, segs: list, start: int) -> None:
    plain = [i for i in range(start, len(roles)) if roles[i] == Role.CACHE_PLAIN]
    for i in plain:
        if segs[i] == segs[plain[-1]]:
            roles[i] = int(Role.CACHE)


def layout_meta(seed: int, batch: int = 1, flags: GistFlags = GistFlags(), exclude_continue: bool = False,
                prefill_compress: bool = True, **kw) -> GistMeta:
    """[B, L] metadata: `batch` random rows, padded to a common length."""
    rng = random.Random(seed)
    rows = [layout_row(rng, n_docs=rng.randint(1, 3), prefill_compress=prefill_compress, **kw) for _ in range(batch)]
    L = max(len(r[0]) for r in rows)
    fields = []
    for roles, segs, docs in rows:
        pad = L - len(roles)
        role = torch.tensor(roles + [int(Role.PAD)] * pad, dtype=torch.int8)
        seg = torch.tensor(segs + [-1] * pad, dtype=torch.int32)
        doc = torch.tensor(docs + [-1] * pad, dtype=torch.int32)
        exp = compute_expire(role, seg, doc, exclude_continue=exclude_continue)
        fields.append((role, seg, doc, exp))
    return GistMeta(*(torch.stack(t) for t in zip(*fields)), flags)


def scrambled_meta(seed: int, L: int, batch: int = 1, flags: GistFlags = GistFlags()) -> GistMeta:
    """Metadata that is valid but follows no layout: random roles, segments scattered or repeated
    across documents, cache tokens outside segments, random expiries, padding between documents.
    The builder's only preconditions hold (doc ids are contiguous runs, seg ids < L)."""
    rng = random.Random(seed)
    out = []
    for _ in range(batch):
        doc, next_id = [], 0
        while len(doc) < L:
            n = rng.randint(1, L)
            if rng.random() < 0.25:
                doc += [-1] * n
            else:
                doc += [next_id] * n
                next_id += 1
        doc = doc[:L]
        role, seg, cur = [], [], 0
        for t in range(L):
            role.append(int(Role.CACHE) if rng.random() < 0.35 else rng.randint(0, max(Role)))
            if rng.random() < 0.2:
                cur = rng.randint(-1, L - 1)
            seg.append(-1 if rng.random() < 0.1 else cur)
        expire = [rng.choice([NEVER, rng.randint(0, L), min(L, t + rng.randint(0, L))]) for t in range(L)]
        out.append([torch.tensor(x, dtype=torch.int32) for x in (role, seg, doc, expire)])
    return GistMeta(*(torch.stack(t) for t in zip(*out)), flags)


# ---------------------------------------------------------------- helpers

def torch_block_mask(meta: GistMeta, block_size) -> tuple[torch.Tensor, ...]:
    m = meta.batched()
    B, L = m.role.shape
    bm = create_block_mask(gist_mask_mod(m), B, 1, L, L, device="cpu", BLOCK_SIZE=block_size)
    return bm.kv_num_blocks, bm.kv_indices, bm.full_kv_num_blocks, bm.full_kv_indices


def assert_same(got, want, what: str) -> None:
    for name, g, w in zip(("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices"), got, want):
        assert g.dtype == w.dtype == torch.int32, (what, name, g.dtype, w.dtype)
        assert g.shape == w.shape, (what, name, g.shape, w.shape)
        assert torch.equal(g, w), f"{what}: {name} differs"


def dense_from_block_mask(meta: GistMeta, block_size: int) -> torch.Tensor:
    """[B, L, L] from the BlockMask: full tiles all True, partial tiles refined by the mask_mod,
    empty tiles False — what FlexAttention computes."""
    m = meta.batched()
    B, L = m.role.shape
    bm = gist_block_mask(m, block_size)
    full_tiles = _tile_map(bm.full_kv_num_blocks, bm.full_kv_indices)
    partial_tiles = _tile_map(bm.kv_num_blocks, bm.kv_indices)
    expand = lambda t: t.repeat_interleave(block_size, 1).repeat_interleave(block_size, 2)[:, :L, :L]  # noqa: E731
    mod = create_mask(gist_mask_mod(m), B, 1, L, L, device="cpu")[:, 0]
    return expand(full_tiles) | (expand(partial_tiles) & mod)


def _tile_map(num: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    n_kv = idx.shape[-1]
    listed = torch.arange(n_kv) < num[..., None].long()
    out = torch.zeros(idx.shape, dtype=torch.bool)
    out.scatter_(-1, idx.long(), listed)
    return out[:, 0]


layouts = st.builds(
    dict,
    seed=st.integers(0, 2**31),
    batch=st.integers(1, 2),
    flags=st.sampled_from(ALL_FLAGS),
    exclude_continue=st.booleans(),
    prefill_compress=st.booleans(),
)


# ---------------------------------------------------------------- mask_mod

@SETTINGS
@given(layouts)
def test_mask_mod_equals_reference(params):
    meta = layout_meta(**params)
    B, L = meta.role.shape
    dense = create_mask(gist_mask_mod(meta), B, 1, L, L, device="cpu")[:, 0]
    assert torch.equal(dense, reference_mask(meta))


def test_mask_mod_is_elementwise_and_compilable():
    meta = layout_meta(3, flags=GistFlags(True, True, False), exclude_continue=True)
    L = meta.role.shape[-1]
    q, k = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")
    b = torch.zeros_like(q)
    got = torch.compile(gist_mask_mod(meta), backend="eager", fullgraph=True)(b, 0, q, k)
    assert torch.equal(got, reference_mask(meta)[0])


# ---------------------------------------------------------------- block mask builder

@SETTINGS
@given(layouts, st.sampled_from([16, 32, 128, (16, 32), (32, 16)]))
def test_block_mask_op_and_fallback_equal_create_block_mask(params, block_size):
    meta = layout_meta(**params, max_thoughts=6, thought_len=(1, 40))
    want = torch_block_mask(meta, block_size)
    assert_same(build_gist_block_mask(meta, block_size), want, "op")
    assert_same(build_gist_block_mask_torch(meta, block_size), want, "torch fallback")


@SETTINGS
@given(st.integers(0, 2**31), st.integers(1, 90), st.sampled_from(ALL_FLAGS), st.sampled_from([1, 3, 4, 16, (2, 5)]))
def test_block_mask_exact_on_scrambled_metadata(seed, L, flags, block_size):
    meta = scrambled_meta(seed, L, batch=2, flags=flags)
    want = torch_block_mask(meta, block_size)
    assert_same(build_gist_block_mask(meta, block_size), want, "op")
    assert_same(build_gist_block_mask_torch(meta, block_size), want, "torch fallback")


def test_op_backend_is_cpp_when_extension_built():
    assert backend("build_gist_block_mask", "cpu") == ("cpp" if extension_status()[0] else "torch")
    if extension_status()[0]:  # the op has a fake (shape) kernel: torch.compile traces it in one graph
        meta = layout_meta(7, batch=2, flags=GistFlags(see_current=True))

        def op(role, seg, doc, expire):
            return torch.ops.thinkc.build_gist_block_mask(role, seg, doc, expire, 16, 16, True, False, False)

        got = torch.compile(op, fullgraph=True, backend="eager")(meta.role, meta.seg, meta.doc, meta.expire)
        assert_same(got, torch_block_mask(meta, 16), "compiled op")


@settings(SETTINGS, max_examples=10)
@given(layouts, st.sampled_from([16, 32]))
def test_dense_from_block_mask_equals_reference(params, block_size):
    meta = layout_meta(**params, max_thoughts=6, thought_len=(1, 40))
    assert torch.equal(dense_from_block_mask(meta, block_size), reference_mask(meta))


def test_block_mask_on_long_synthetic_layouts():
    from thinkc.bench.mask import synthetic_layout

    for L, thoughts, flags in ((1000, (20, 80), GistFlags()), (1531, (100, 300), GistFlags(True, False, True))):
        meta = synthetic_layout(L, thought_len=thoughts, seed=L, flags=flags).batched()
        want = torch_block_mask(meta, 128)
        assert_same(build_gist_block_mask(meta, 128), want, "op")
        assert_same(build_gist_block_mask_torch(meta, 128), want, "torch fallback")
        assert 0.0 < block_sparsity(gist_block_mask(meta)) < 1.0


@pytest.mark.parametrize("path", ["dispatch", "torch"])
def test_invalid_metadata_is_rejected(path, monkeypatch):
    if path == "torch":  # the fallback's Python check, as without the extension
        monkeypatch.setattr("thinkc.ops.block_mask.backend", lambda op, device: "torch")
    role = torch.full((1, 6), int(Role.CACHE), dtype=torch.int8)
    never = torch.full((1, 6), NEVER, dtype=torch.int32)
    split = torch.tensor([[0, 0, 1, 1, 0, 0]], dtype=torch.int32)  # doc 0 in two runs: not an interval
    with pytest.raises(ValueError, match="contiguous"):
        build_gist_block_mask(GistMeta(role, torch.full((1, 6), -1, dtype=torch.int32), split, never), 4)
    big_seg = torch.full((1, 6), 6, dtype=torch.int32)  # seg ids index a table of L entries
    with pytest.raises(ValueError, match="seg ids"):
        build_gist_block_mask(GistMeta(role, big_seg, torch.zeros_like(split), never, GistFlags(see_current=True)), 4)


def test_block_sparsity_counts_skipped_tiles():
    L = 64
    role = torch.full((L,), int(Role.PROMPT), dtype=torch.int8)
    causal = GistMeta(role, torch.full((L,), -1, dtype=torch.int32), torch.zeros(L, dtype=torch.int32),
                      torch.full((L,), NEVER, dtype=torch.int32))
    bm = gist_block_mask(causal, 16)  # 4x4 tiles: 4 partial (diagonal) + 6 full, 6 skipped
    assert bm.kv_num_blocks.sum() == 4 and bm.full_kv_num_blocks.sum() == 6
    assert block_sparsity(bm) == pytest.approx(6 / 16)
    assert block_sparsity(bm) == pytest.approx(bm.sparsity() / 100)


# ---------------------------------------------------------------- packing

def sample_from_meta(meta: GistMeta, seed: int) -> GistSample:
    L = meta.role.shape[-1]
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (L,), generator=g)
    labels = torch.where(meta.role == int(Role.THOUGHT), ids, IGNORE_INDEX)
    return GistSample(ids, labels, torch.arange(L), meta)


def one_sample(seed: int, flags: GistFlags, prefill_compress: bool = True, **expire_flags) -> GistSample:
    rng = random.Random(seed)
    roles, segs, docs = layout_row(rng, n_docs=1, prefill_compress=prefill_compress)
    keep = [i for i, r in enumerate(roles) if r != int(Role.PAD)]  # a sample has no padding of its own
    role = torch.tensor([roles[i] for i in keep], dtype=torch.int8)
    seg = torch.tensor([segs[i] for i in keep], dtype=torch.int32)
    doc = torch.zeros(len(keep), dtype=torch.int32)
    return sample_from_meta(GistMeta(role, seg, doc, compute_expire(role, seg, doc, **expire_flags), flags), seed)


@SETTINGS
@given(st.lists(st.integers(0, 2**31), min_size=1, max_size=6), st.sampled_from(ALL_FLAGS), st.booleans(),
       st.booleans(), st.integers(0, 40))
def test_packed_row_mask_is_block_diagonal(seeds, flags, exclude_continue, prefill_compress, slack):
    samples = [one_sample(s, flags, exclude_continue=exclude_continue, prefill_compress=prefill_compress)
               for s in seeds]
    max_len = max(len(s) for s in samples) + slack
    rows = pack_samples(samples, max_len, pad_id=0)
    placed = first_fit([len(s) for s in samples], max_len)
    assert len(rows) == len(placed)
    for row, members in zip(rows, placed):
        assert len(row) == max_len
        want = torch.zeros(max_len, max_len, dtype=torch.bool)
        at = 0
        for d, i in enumerate(members):
            s = samples[i]
            n = len(s)
            want[at:at + n, at:at + n] = reference_mask(s.meta)[0]
            assert torch.equal(row.input_ids[at:at + n], s.input_ids)
            assert torch.equal(row.labels[at:at + n], s.labels)
            assert torch.equal(row.position_ids[at:at + n], s.position_ids)  # positions restart per sample
            assert (row.meta.doc[at:at + n] == d).all()
            at += n
        assert (row.meta.role[at:] == int(Role.PAD)).all() and (row.meta.doc[at:] == -1).all()
        assert (row.labels[at:] == IGNORE_INDEX).all() and (row.input_ids[at:] == 0).all()
        assert torch.equal(reference_mask(row.meta)[0], want)
        # the packed row's expire is what compute_expire gives on the packed row itself
        assert torch.equal(row.meta.expire, compute_expire(row.meta.role, row.meta.seg, row.meta.doc,
                                                           exclude_continue=exclude_continue))
        assert_same(build_gist_block_mask(row.meta, 16), torch_block_mask(row.meta, 16), "packed row")


def test_first_fit_fills_earlier_rows_first():
    assert first_fit([6, 5, 4, 3, 1], 10) == [[0, 2], [1, 3, 4]]


def test_pack_rejects_a_sample_longer_than_max_len():
    samples = [one_sample(1, GistFlags()), one_sample(2, GistFlags())]
    longest = max(range(2), key=lambda i: len(samples[i]))
    with pytest.raises(ValueError, match=f"sample {longest} has {len(samples[longest])} tokens"):
        pack_samples(samples, len(samples[longest]) - 1, pad_id=0)


def test_pack_rejects_mixed_flags():
    with pytest.raises(ValueError, match="flags"):
        pack_samples([one_sample(1, GistFlags()), one_sample(2, GistFlags(see_current=True))], 500, pad_id=0)


# ---------------------------------------------------------------- FlexAttention with the BlockMask

@pytest.mark.slow  # the first torch.compile of flex on CPU takes 10-40 s with a cold inductor cache
def test_flex_attention_with_block_mask_matches_sdpa_dense():
    from torch.nn.attention.flex_attention import flex_attention

    samples = [one_sample(s, GistFlags(bi_directional=True), exclude_continue=True) for s in (11, 12, 13)]
    row = pack_samples(samples, 200, pad_id=0)[0]
    meta = row.meta.batched()
    L = meta.role.shape[-1]
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, L, 16, generator=g)
    k = torch.randn(1, 2, L, 16, generator=g)
    v = torch.randn(1, 2, L, 16, generator=g)
    bm = gist_block_mask(meta, 32)
    assert bm.kv_num_blocks.sum() + bm.full_kv_num_blocks.sum() < bm.kv_indices.numel()  # something skipped
    out = torch.compile(flex_attention, dynamic=False)(q, k, v, block_mask=bm, enable_gqa=True)
    dense = additive_mask(reference_mask(meta), torch.float32)[:, None]
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=dense, enable_gqa=True)
    rows = meta.doc[0] >= 0  # padding queries see nothing; their outputs are ignored
    torch.testing.assert_close(out[:, :, rows], want[:, :, rows], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- bench plumbing

def test_synthetic_layout_and_mask_bench_rows():
    from thinkc.bench.mask import run_mask_bench, synthetic_layout

    meta = synthetic_layout(700, thought_len=(20, 80), n_cache=9, seed=1)
    assert len(meta) == 700 and (meta.role == int(Role.CACHE)).sum() % 9 == 0 and meta.seg.max() >= 3
    rows = run_mask_bench((300, 513), block_size=64, repeats=1, warmup=0)
    assert [r["L"] for r in rows] == [300, 513]
    for r in rows:
        assert r["equal"] is True and r["op_ms"] > 0 and r["cbm_ms"] > 0 and r["dense_ms"] > 0
        assert 0.0 < r["sparsity"] < 1.0


@pytest.mark.parametrize("mode, level, flags", [
    ("aug", "thought", dict(see_current=True, bi_directional=True, exclude_continue=True)),
    ("recover", "token", dict(diagonal=True, prefill_compress=True)),
    ("recover", "thought", dict(see_current=True, exclude_continue=True, prefill_compress=False, hybrid=True)),
    ("aug", "token", dict(bi_directional=True, prefill_compress=False, hybrid=True)),
])
def test_real_layouts_packed(tokenizer, mode, level, flags):
    """Samples from the layout builder (synthetic task), packed: op == fallback == create_block_mask."""
    from thinkc.data.synth import synth_records
    from thinkc.gist.config import GistConfig
    from thinkc.gist.layout import build_samples
    from thinkc.gist.tokens import add_gist_tokens

    cfg = GistConfig(mode=mode, level=level, **flags)
    add_gist_tokens(tokenizer, None, cfg)
    samples, _ = build_samples(synth_records(4, seed=3), tokenizer, cfg)
    rows = pack_samples(samples, 2 * max(len(s) for s in samples), pad_id=0)
    meta = GistMeta(*(torch.stack([getattr(r.meta, f) for r in rows]) for f in ("role", "seg", "doc", "expire")),
                    cfg.flags)
    want = torch_block_mask(meta, 64)
    assert_same(build_gist_block_mask(meta, 64), want, "op")
    assert_same(build_gist_block_mask_torch(meta, 64), want, "torch fallback")
