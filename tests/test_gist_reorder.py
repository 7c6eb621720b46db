"""Physical reordering (thinkc.gist.reorder) is exact: the reordered row's dense mask, mask_mod and
BlockMask are the sequence-order reference permuted; a tiny model gives the same per-token logits,
loss and gradients on the reordered row as in sequence order (fp32, 1e-5), packed or not, with every
flag; packing reordered samples equals reordering the packed row."""
from __future__ import annotations

import random

import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask, create_mask

from test_gist_masks import ALL_FLAGS, assert_same, layout_row, one_sample, sample_from_meta
from thinkc.gist.block_mask import gist_block_mask
from thinkc.gist.mask_mod import gist_mask_mod
from thinkc.gist.packing import pack_samples
from thinkc.gist.reorder import (computed_tile_share, reorder_permutation, reorder_sample, reordered_block_mask_tensors,
                                 resolve_reorder, restore_order, shifted_labels)
from thinkc.gist.reorder_tiles import tile_counts
from thinkc.gist.rule import GistMeta, Role, compute_expire, reference_mask
from thinkc.gist.sample import IGNORE_INDEX, GistSample

CASES = [(seed, flags, ec, pc) for seed, (flags, ec, pc) in
         enumerate((f, ec, pc) for f in ALL_FLAGS for ec in (False, True) for pc in (True, False))]


def packed_row(seed: int, flags, exclude_continue: bool, prefill_compress: bool) -> GistSample:
    """One sequence-order row of 1-3 documents and trailing padding (layout_row), as a sample."""
    rng = random.Random(seed)
    roles, segs, docs = layout_row(rng, n_docs=rng.randint(1, 3), prefill_compress=prefill_compress)
    role = torch.tensor(roles, dtype=torch.int8)
    seg, doc = torch.tensor(segs, dtype=torch.int32), torch.tensor(docs, dtype=torch.int32)
    meta = GistMeta(role, seg, doc, compute_expire(role, seg, doc, exclude_continue=exclude_continue), flags)
    return sample_from_meta(meta, seed)


def permuted_reference(s: GistSample, perm: torch.Tensor) -> torch.Tensor:
    return reference_mask(s.meta)[0][perm][:, perm]


# ---------------------------------------------------------------- (a) the dense mask

@pytest.mark.parametrize("seed,flags,exclude_continue,prefill_compress", CASES[::3])
def test_reordered_mask_is_the_permuted_reference(seed, flags, exclude_continue, prefill_compress):
    s = packed_row(seed, flags, exclude_continue, prefill_compress)
    r = reorder_sample(s)
    perm = reorder_permutation(s.meta)
    assert torch.equal(r.meta.pos, perm) and torch.equal(perm.sort().values, torch.arange(len(s)))
    want = permuted_reference(s, perm)
    assert torch.equal(reference_mask(r.meta)[0], want)
    L = len(r)
    assert torch.equal(create_mask(gist_mask_mod(r.meta), 1, 1, L, L, device="cpu")[0, 0], want)
    # everything travels with its token
    for a, b in ((r.input_ids, s.input_ids), (r.labels, s.labels), (r.position_ids, s.position_ids),
                 (r.meta.role, s.meta.role), (r.meta.seg, s.meta.seg), (r.meta.expire, s.meta.expire)):
        assert torch.equal(a, b[perm])


def test_physical_order_is_prompt_then_gist_blocks_then_the_rest_per_document():
    s = packed_row(3, ALL_FLAGS[0], False, True)
    r = reorder_sample(s)
    role, doc = r.meta.role.long(), r.meta.doc.long()
    group = torch.full_like(role, 2)
    group[(role == Role.PROMPT) | (role == Role.CACHE_PLAIN)] = 0
    group[(role == Role.CACHE) | (role == Role.OUTPUT)] = 1
    run = torch.cat([torch.zeros(1, dtype=torch.long), (doc[1:] != doc[:-1]).long().cumsum(0)])
    key = run * 3 + group
    assert (key[1:] >= key[:-1]).all()  # docs stay contiguous runs, groups in order inside each
    assert (run.unique().numel() == s.meta.doc.unique().numel())
    same = key[1:] == key[:-1]
    assert (r.meta.pos[1:][same] > r.meta.pos[:-1][same]).all()  # stable within a group
    assert not torch.equal(r.meta.pos, torch.arange(len(r)))  # this row really moves
    assert not torch.equal(reference_mask(r.meta)[0], reference_mask(s.meta)[0])


# ---------------------------------------------------------------- (c) the BlockMask

def dense_block_mask(dense: torch.Tensor, block_size):
    """create_block_mask of a mask given as a dense [B, L, L] tensor."""
    B, L, _ = dense.shape
    bm = create_block_mask(lambda b, h, q, k: dense[b, q, k], B, 1, L, L, device="cpu", BLOCK_SIZE=block_size)
    return bm.kv_num_blocks, bm.kv_indices, bm.full_kv_num_blocks, bm.full_kv_indices


@pytest.mark.parametrize("seed,flags,exclude_continue,prefill_compress", CASES[::5])
@pytest.mark.parametrize("block_size", [16])
def test_reordered_block_mask_equals_create_block_mask_of_the_permuted_reference(
        seed, flags, exclude_continue, prefill_compress, block_size):
    rows = [reorder_sample(packed_row(seed + k, flags, exclude_continue, prefill_compress)) for k in range(2)]
    L = max(len(r) for r in rows)
    rows = [pack_samples([r], L, pad_id=0)[0] for r in rows]  # a batch of 2 rows of one length
    meta = GistMeta(*(torch.stack([getattr(r.meta, f) for r in rows]) for f in ("role", "seg", "doc", "expire")),
                    flags, torch.stack([r.meta.pos for r in rows]))
    want = dense_block_mask(reference_mask(meta), block_size)
    assert_same(reordered_block_mask_tensors(meta, block_size), want, "reordered tiles")
    bm = gist_block_mask(meta, block_size)
    assert_same((bm.kv_num_blocks, bm.kv_indices, bm.full_kv_num_blocks, bm.full_kv_indices), want, "gist_block_mask")
    m = create_block_mask(gist_mask_mod(meta), 2, 1, L, L, device="cpu", BLOCK_SIZE=block_size)
    assert_same((m.kv_num_blocks, m.kv_indices, m.full_kv_num_blocks, m.full_kv_indices), want, "mask_mod")


def shuffled_within_docs(meta: GistMeta, seed: int) -> GistMeta:
    """A batch [B, L] stored in a random physical order inside every document run (many runs)."""
    g = torch.Generator().manual_seed(seed)
    perms = []
    for doc in meta.doc.long():
        run = torch.cat([torch.zeros(1, dtype=torch.long), (doc[1:] != doc[:-1]).long().cumsum(0)])
        perms.append(torch.sort(run * len(doc) + torch.randperm(len(doc), generator=g)).indices)
    perm = torch.stack(perms)
    take = lambda t: t.gather(1, perm.to(torch.int64)).to(t.dtype)  # noqa: E731
    return GistMeta(take(meta.role), take(meta.seg), take(meta.doc), take(meta.expire), meta.flags, perm)


@pytest.mark.parametrize("seed,flags", [(s, ALL_FLAGS[s]) for s in (0, 3, 5, 6)])  # every flag, alone or not
def test_tiles_of_any_order_equal_create_block_mask(seed, flags):
    from test_gist_masks import layout_meta, scrambled_meta

    from thinkc.ops.block_mask import build_gist_block_mask

    for meta in (layout_meta(seed, batch=2, flags=flags), scrambled_meta(seed, 70, batch=2, flags=flags)):
        assert_same(reordered_block_mask_tensors(meta, 16), build_gist_block_mask(meta, 16), "sequence order")
        shuffled = shuffled_within_docs(meta, seed)
        want = reference_mask(meta).gather(1, shuffled.pos[:, :, None].expand(-1, -1, meta.role.shape[1]))
        want = want.gather(2, shuffled.pos[:, None, :].expand(-1, meta.role.shape[1], -1))
        assert torch.equal(reference_mask(shuffled), want)
        assert_same(reordered_block_mask_tensors(shuffled, (16, 32)), dense_block_mask(want, (16, 32)), "shuffled")
        for m, dense in ((meta, reference_mask(meta)), (shuffled, want)):  # exact pair counts per tile
            assert torch.equal(tile_counts(m, 1, 1), dense.long())
            assert torch.equal(tile_counts(m, 8, 4), pair_counts(dense, 8, 4))


def pair_counts(dense: torch.Tensor, q_block: int, kv_block: int) -> torch.Tensor:
    B, L, _ = dense.shape
    n_q, n_kv = -(-L // q_block), -(-L // kv_block)
    padded = torch.nn.functional.pad(dense.long(), (0, n_kv * kv_block - L, 0, n_q * q_block - L))
    return padded.view(B, n_q, q_block, n_kv, kv_block).sum((2, 4))


def synthetic_sample(L: int, thought_len) -> GistSample:
    from thinkc.bench.mask import synthetic_layout

    meta = synthetic_layout(L, thought_len=thought_len, seed=0)
    return GistSample(torch.zeros(L, dtype=torch.long), torch.zeros(L, dtype=torch.long), torch.arange(L), meta)


def test_reordering_leaves_fewer_tiles_on_a_long_synthetic_layout():
    s = synthetic_sample(2048, (20, 80))
    seq, reo = computed_tile_share([s], 128), computed_tile_share([reorder_sample(s)], 128)
    assert reo < 0.7 * seq, (seq, reo)
    assert torch.equal(reorder_sample(s, only_where_fewer_tiles=128).meta.pos, reorder_sample(s).meta.pos)


def test_documents_are_reordered_only_where_that_computes_fewer_tiles():
    short = synthetic_sample(512, (20, 80))  # every document reordered: 75.0% of tiles instead of 62.5%
    assert computed_tile_share([reorder_sample(short)], 128) > computed_tile_share([short], 128)
    kept = reorder_sample(short, only_where_fewer_tiles=128)
    assert torch.equal(kept.meta.pos, torch.arange(512)) and torch.equal(kept.input_ids, short.input_ids)
    long_, short_ = synthetic_sample(2048, (20, 80)), synthetic_sample(400, (20, 80))
    row = pack_samples([short_, long_], 2448 + 16, pad_id=0)[0]
    got = reorder_sample(row, only_where_fewer_tiles=128)
    assert torch.equal(got.meta.pos[:400], torch.arange(400))  # the short document stays in order
    assert not torch.equal(got.meta.pos[400:2448], torch.arange(400, 2448))  # the long one moves
    assert torch.equal(reference_mask(got.meta)[0], permuted_reference(row, got.meta.pos))
    assert computed_tile_share([got], 128) < computed_tile_share([row], 128)


# ---------------------------------------------------------------- (d) packing

@pytest.mark.parametrize("seed,flags,exclude_continue,prefill_compress", CASES[1::5])
def test_packing_reordered_samples_equals_reordering_the_packed_row(seed, flags, exclude_continue, prefill_compress):
    samples = [one_sample(seed * 7 + k, flags, prefill_compress=prefill_compress, exclude_continue=exclude_continue)
               for k in range(4)]
    max_len = max(len(s) for s in samples) + 9
    rows = pack_samples(samples, max_len, pad_id=0)
    got = pack_samples([reorder_sample(s) for s in samples], max_len, pad_id=0)
    assert len(rows) == len(got)
    for row, g in zip(rows, got):
        want = reorder_sample(row)
        for f in ("input_ids", "labels", "position_ids"):
            assert torch.equal(getattr(g, f), getattr(want, f)), f
        for f in ("role", "seg", "doc", "expire", "pos"):
            assert torch.equal(getattr(g.meta, f).long(), getattr(want.meta, f).long()), f
        assert torch.equal(reference_mask(g.meta)[0], permuted_reference(row, want.meta.pos))
        bm = gist_block_mask(g.meta, 16)
        assert_same((bm.kv_num_blocks, bm.kv_indices, bm.full_kv_num_blocks, bm.full_kv_indices),
                    dense_block_mask(reference_mask(g.meta), 16), "packed reordered row")


def test_mixing_orders_and_cutting_a_reordered_row_are_refused():
    from thinkc.train.collator import GistCollator

    a, b = one_sample(1, ALL_FLAGS[0]), one_sample(2, ALL_FLAGS[0])
    with pytest.raises(ValueError, match="reordered"):
        pack_samples([a, reorder_sample(b)], len(a) + len(b), pad_id=0)
    with pytest.raises(ValueError, match="reordered"):
        GistCollator(pad_id=0)([a, reorder_sample(b)])
    with pytest.raises(ValueError, match="reordered"):
        reorder_sample(a).prefix(3)


# ---------------------------------------------------------------- labels and the option

def test_shifted_labels_are_the_sequence_order_shift_permuted():
    s = packed_row(5, ALL_FLAGS[0], False, True)
    s.labels[::3] = s.input_ids[::3]  # labels on every role, so a wrong successor shows
    r = reorder_sample(s)
    got = restore_order(shifted_labels(r.labels, r.meta.pos)[None], r.meta.pos)[0]
    want = torch.cat([s.labels[1:], torch.tensor([IGNORE_INDEX])])
    assert torch.equal(got, want)
    assert not torch.equal(shifted_labels(r.labels, r.meta.pos), torch.cat([r.labels[1:], torch.tensor([IGNORE_INDEX])]))


def test_reorder_setting_resolves_per_device():
    assert resolve_reorder("auto", "cuda", True) is True
    assert resolve_reorder("auto", "cpu", True) is False
    assert resolve_reorder(True, "cpu", True) is True
    assert resolve_reorder(True, "cuda", False) is False  # plain causal sft: nothing to reorder
    assert resolve_reorder(False, "cuda", True) is False
    with pytest.raises(Exception, match="auto, true or false"):
        resolve_reorder("yes", "cpu", True)
