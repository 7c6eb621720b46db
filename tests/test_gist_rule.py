"""Hand-checked cases of the reference gist attention rule (thinkc/gist/rule.py)."""
import torch

from thinkc.gist.rule import NEVER, GistFlags, GistMeta, Role, compute_expire, reference_mask

R = Role
# P P | S0 S0 S0 <w> C0 C0 [o] | S1 S1 <w> C1 C1 [o] | A A
ROLES = [R.PROMPT] * 2 + [R.THOUGHT] * 3 + [R.TRIGGER, R.CACHE, R.CACHE, R.OUTPUT] \
    + [R.THOUGHT] * 2 + [R.TRIGGER, R.CACHE, R.CACHE, R.OUTPUT] + [R.ANSWER] * 2
SEGS = [-1] * 2 + [0] * 7 + [1] * 6 + [-1] * 2


def meta(flags=GistFlags(), doc=None, **expire_flags):
    role = torch.tensor([int(r) for r in ROLES], dtype=torch.int8)
    seg = torch.tensor(SEGS, dtype=torch.int32)
    doc = torch.zeros(len(ROLES), dtype=torch.int32) if doc is None else torch.tensor(doc, dtype=torch.int32)
    return GistMeta(role, seg, doc, compute_expire(role, seg, doc, **expire_flags), flags)


def seen(mask, q):
    return torch.nonzero(mask[0, q]).flatten().tolist()


def test_expire_points_past_cache_block():
    e = meta().expire.tolist()
    assert e[2:6] == [8] * 4 and e[9:12] == [14] * 3
    assert all(x == NEVER for i, x in enumerate(e) if i not in range(2, 6) and i not in range(9, 12))


def test_base_rule():
    m = reference_mask(meta())
    assert seen(m, 4) == [0, 1, 2, 3, 4]  # a thought sees prompt and itself so far
    assert seen(m, 7) == [0, 1, 2, 3, 4, 5, 6, 7]  # a cache token sees S_0 and earlier C_0
    assert seen(m, 8) == [0, 1, 6, 7, 8]  # [o] no longer sees S_0
    assert seen(m, 12) == [0, 1, 6, 7, 8, 9, 10, 11, 12]
    assert seen(m, 16) == [0, 1, 6, 7, 8, 12, 13, 14, 15, 16]


def test_flags():
    assert seen(reference_mask(meta(GistFlags(see_current=True))), 13) == [9, 10, 11, 12, 13]
    assert seen(reference_mask(meta(GistFlags(bi_directional=True))), 12) == [0, 1, 6, 7, 8, 9, 10, 11, 12, 13]
    assert seen(reference_mask(meta(GistFlags(diagonal=True))), 13) == [0, 1, 6, 7, 8, 9, 10, 11, 13]
    # non-cache queries are untouched by the flags
    assert seen(reference_mask(meta(GistFlags(True, True, False))), 10) == [0, 1, 6, 7, 8, 9, 10]


def test_exclude_continue_hides_previous_output():
    m = reference_mask(meta(exclude_continue=True))
    assert seen(m, 14) == [0, 1, 6, 7, 12, 13, 14]  # C_0 stays, [o]_0 goes
    assert 8 in seen(m, 13)  # C_1 still sees [o]_0


def test_padding_and_documents():
    doc = [0] * 9 + [1] * 6 + [-1] * 2  # two packed samples, then padding
    m = reference_mask(meta(doc=doc))
    assert seen(m, 10) == [9, 10]  # the second document does not see the first
    assert not m[0, :, 15:].any() and not m[0, 15:].any()
