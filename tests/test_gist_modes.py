"""aug / recover / hybrid prompt recovery and prefill_compress on both values, every flag combination,
on hand-written layouts whose expected rows are written out below from the original LightThinker's
mask construction (zjunlp/LightThinker utils.create_attention_for_aug_data / _for_recover_data, read
as code, not docs). The reference rule must give exactly these rows; mask_mod, the BlockMask builder
(op and torch fallback) and packing must give exactly the reference."""
from __future__ import annotations

import pytest
import torch
from torch.nn.attention.flex_attention import create_mask

from test_gist_masks import ALL_FLAGS, assert_same, dense_from_block_mask, sample_from_meta, torch_block_mask
from thinkc.gist.mask_mod import gist_mask_mod
from thinkc.gist.packing import pack_samples
from thinkc.gist.rule import GistFlags, GistMeta, Role, compute_expire, reference_mask
from thinkc.ops.block_mask import build_gist_block_mask, build_gist_block_mask_torch

P, S, C, CP, W, T, O, A, R = (Role.PROMPT, Role.PROMPT, Role.CACHE, Role.CACHE_PLAIN, Role.TRIGGER,
                              Role.THOUGHT, Role.OUTPUT, Role.ANSWER, Role.RECOVER)

# aug, n = 2: template | sentence 0 (1-2) C (3-4) | sentence 1 (5) C (6-7) | template (8) |
# thought 2 (9-10) <w> (11) C (12-13) [o] (14) | thought 3 (15) <w> (16) C (17-18) [o] (19) | answer EOS (20-21)
AUG = [(P, -1), (S, 0), (S, 0), (C, 0), (C, 0), (S, 1), (C, 1), (C, 1), (P, -1),
       (T, 2), (T, 2), (W, 2), (C, 2), (C, 2), (O, 2), (T, 3), (W, 3), (C, 3), (C, 3), (O, 3), (A, -1), (A, -1)]
# recover: <|recover|> (22), copies of thought 2 (23-25) and thought 3 (26-27), EOS (28)
RECOVERY = [(R, -1), (R, 2), (R, 2), (R, 2), (R, 3), (R, 3), (R, -1)]
RECOVERY_FIRST = [(R, -1), (R, 2), (R, 2), (R, 2), (R, -1)]  # only thought 2 fitted in max_length

GIST = [0, 3, 4, 6, 7, 8]  # what every row past the prompt keeps of it
# sentence rule (prefill_compress=true), no flags
AUG_ROWS = {0: [0], 1: [0, 1], 2: [0, 1, 2], 3: [0, 1, 2, 3], 4: [0, 1, 2, 3, 4], 5: [0, 3, 4, 5],
            6: [0, 3, 4, 5, 6], 7: [0, 3, 4, 5, 6, 7], 8: GIST,
            9: GIST + [9], 10: GIST + [9, 10], 11: GIST + [9, 10, 11], 12: GIST + [9, 10, 11, 12],
            13: GIST + [9, 10, 11, 12, 13], 14: GIST + [12, 13, 14], 15: GIST + [12, 13, 14, 15],
            16: GIST + [12, 13, 14, 15, 16], 17: GIST + [12, 13, 14, 15, 16, 17],
            18: GIST + [12, 13, 14, 15, 16, 17, 18], 19: GIST + [12, 13, 14, 17, 18, 19],
            20: GIST + [12, 13, 14, 17, 18, 19, 20], 21: GIST + [12, 13, 14, 17, 18, 19, 20, 21]}
# plain prefill (prefill_compress=false): the prompt square is lower-triangular, no flags there
PLAIN_PROMPT_ROWS = {q: list(range(q + 1)) for q in range(9)}
# the flags, on the rows of the flagged cache tokens
SEE_CURRENT = {3: [1, 2, 3], 4: [1, 2, 3, 4], 6: [5, 6], 7: [5, 6, 7], 12: [9, 10, 11, 12],
               13: [9, 10, 11, 12, 13], 17: [15, 16, 17], 18: [15, 16, 17, 18]}
BI_ADDS = {3: 4, 6: 7, 12: 13, 17: 18}  # the later sibling
DIAG_DROPS = {4: 3, 7: 6, 13: 12, 18: 17}  # the earlier sibling
PROMPT_CACHE_ROWS = (3, 4, 6, 7)


def meta_of(tokens, flags=GistFlags(), exclude_continue=False) -> GistMeta:
    role = torch.tensor([int(r) for r, _ in tokens], dtype=torch.int8)
    seg = torch.tensor([g for _, g in tokens], dtype=torch.int32)
    doc = torch.zeros(len(tokens), dtype=torch.int32)
    return GistMeta(role, seg, doc, compute_expire(role, seg, doc, exclude_continue=exclude_continue), flags)


def plain(tokens):
    """prefill_compress=false: the prompt's cache tokens are CACHE_PLAIN."""
    return [(CP if (r == C and i in PROMPT_CACHE_ROWS) else r, g) for i, (r, g) in enumerate(tokens)]


def with_flags(rows: dict, flags: GistFlags, flagged) -> dict:
    rows = {q: list(ks) for q, ks in rows.items()}
    for q in flagged:
        if flags.see_current:
            rows[q] = list(SEE_CURRENT[q])
        if flags.diagonal and q in DIAG_DROPS:
            rows[q].remove(DIAG_DROPS[q])
        elif flags.bi_directional and not flags.diagonal and q in BI_ADDS:
            rows[q].append(BI_ADDS[q])
    return rows


def aug_rows(prefill_compress: bool, flags: GistFlags, exclude_continue: bool) -> dict:
    rows = dict(AUG_ROWS)
    if not prefill_compress:
        rows.update(PLAIN_PROMPT_ROWS)
    flagged = [q for q in SEE_CURRENT if prefill_compress or q not in PROMPT_CACHE_ROWS]
    rows = with_flags(rows, flags, flagged)
    if exclude_continue:  # [o] 14 is gone from the next [o] (19) on
        for q in (19, 20, 21):
            rows[q].remove(14)
    return rows


def recovery_rows(first_only: bool, exclude_continue: bool) -> dict:
    """Rows of the recovery segment: the prompt's gist, the recovered thoughts' C / [o] blocks (the
    earlier [o] not with exclude_continue), itself; never the answer, EOS or another thought."""
    blocks = [12, 13, 14] if first_only else [12, 13, 14, 17, 18, 19]
    if exclude_continue and 14 in blocks:
        blocks.remove(14)  # from [o] 19 on, [o] 14 is gone
    n = len(RECOVERY_FIRST if first_only else RECOVERY)
    return {22 + j: GIST + blocks + list(range(22, 23 + j)) for j in range(n)}


def check_rows(meta: GistMeta, rows: dict) -> None:
    mask = reference_mask(meta)[0]
    assert len(rows) == mask.shape[0]
    for q, ks in rows.items():
        assert mask[q].nonzero().flatten().tolist() == sorted(ks), f"row {q}"


def check_fast_paths(meta: GistMeta) -> None:
    m = meta.batched()
    B, L = m.role.shape
    ref = reference_mask(m)
    assert torch.equal(create_mask(gist_mask_mod(m), B, 1, L, L, device="cpu")[:, 0], ref)
    for bs in (4, 16):
        want = torch_block_mask(m, bs)
        assert_same(build_gist_block_mask(m, bs), want, "op")
        assert_same(build_gist_block_mask_torch(m, bs), want, "torch fallback")
        assert torch.equal(dense_from_block_mask(m, bs), ref)


def check_packed(metas: list[GistMeta]) -> None:
    samples = [sample_from_meta(m, i) for i, m in enumerate(metas)]
    total = sum(len(s) for s in samples)
    row = pack_samples(samples, total + 3, pad_id=0)[0]
    want = torch.zeros(total + 3, total + 3, dtype=torch.bool)
    at = 0
    for s in samples:
        want[at:at + len(s), at:at + len(s)] = reference_mask(s.meta)[0]
        at += len(s)
    assert torch.equal(reference_mask(row.meta)[0], want)
    check_fast_paths(row.meta)


MODES = [(flags, ec, pc) for flags in ALL_FLAGS for ec in (False, True) for pc in (True, False)]
IDS = [f"{f.see_current:d}{f.bi_directional:d}{f.diagonal:d}-ec{ec:d}-pc{pc:d}" for f, ec, pc in MODES]


@pytest.mark.parametrize("flags, exclude_continue, prefill_compress", MODES, ids=IDS)
def test_aug_rows(flags, exclude_continue, prefill_compress):
    tokens = AUG if prefill_compress else plain(AUG)
    meta = meta_of(tokens, flags, exclude_continue)
    check_rows(meta, aug_rows(prefill_compress, flags, exclude_continue))
    check_fast_paths(meta)


@pytest.mark.parametrize("first_only", [False, True])
@pytest.mark.parametrize("flags, exclude_continue, prefill_compress", MODES, ids=IDS)
def test_recover_rows(flags, exclude_continue, prefill_compress, first_only):
    tokens = (AUG + (RECOVERY_FIRST if first_only else RECOVERY))
    tokens = tokens if prefill_compress else plain(tokens)
    meta = meta_of(tokens, flags, exclude_continue)
    rows = aug_rows(prefill_compress, flags, exclude_continue)  # the aug part does not change
    rows.update(recovery_rows(first_only, exclude_continue))
    check_rows(meta, rows)
    check_fast_paths(meta)
    aug = meta_of(AUG if prefill_compress else plain(AUG), flags, exclude_continue)
    check_packed([meta, aug])


# hybrid prompt recovery (its own sample): template | sentence 0 (1-2) C (3-4) | sentence 1 (5) C (6-7) |
# template (8) | <|recover|> sentences EOS (9-12). No thought block: with plain prefill the original keeps
# the flags on the last prompt block (role CACHE) and the sentences expire at its end (8).
PROMPT_RECOVERY = [(P, -1), (S, 0), (S, 0), (C, 0), (C, 0), (S, 1), (C, 1), (C, 1), (P, -1),
                   (A, -1), (A, -1), (A, -1), (A, -1)]
PR_TAIL = {q: GIST + list(range(9, q + 1)) for q in range(8, 13)}


@pytest.mark.parametrize("flags, exclude_continue, prefill_compress", MODES, ids=IDS)
def test_prompt_recovery_rows(flags, exclude_continue, prefill_compress):
    tokens = PROMPT_RECOVERY if prefill_compress else [(CP, 0) if i in (3, 4) else t
                                                        for i, t in enumerate(PROMPT_RECOVERY)]
    meta = meta_of(tokens, flags, exclude_continue)
    rows = {q: AUG_ROWS[q] for q in range(8)}
    if not prefill_compress:
        rows.update(PLAIN_PROMPT_ROWS)
    rows.update(PR_TAIL)
    rows = with_flags(rows, flags, (3, 4, 6, 7) if prefill_compress else (6, 7))
    check_rows(meta, rows)
    check_fast_paths(meta)
    check_packed([meta, meta_of(AUG, flags, exclude_continue)])


def test_prefill_open_end_for_decoding():
    """The prompt alone (what inference prefills), plain prefill: every block is CACHE_PLAIN and the
    sentences stay visible to its end, as in the training sample (they expire at the first thought)."""
    prompt = plain(AUG[:9])
    meta = meta_of(prompt)
    assert meta.expire[[1, 2, 5]].tolist() == [9, 9, 9]
    check_rows(meta, PLAIN_PROMPT_ROWS)
    assert torch.equal(meta.expire, meta_of(plain(AUG)).expire[:9])
