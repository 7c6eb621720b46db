"""Sequence packing: several GistSamples in one row of at most `max_len` tokens.

Greedy first-fit, samples kept whole and in order inside a row. In a row every sample is its own
document (doc ids 0, 1, 2, ...), so the gist rule's document term keeps samples apart: the packed
row's reference mask is the block diagonal of the samples' own masks. Positions restart at each
sample (its own position_ids are kept), `expire` (and a reordered sample's logical indices
`meta.pos`) is shifted by the sample's offset in the row (NEVER stays NEVER), segment ids are made unique per row, and the tail is padding (role PAD,
doc -1, seg -1, label IGNORE_INDEX, expire NEVER)."""
from __future__ import annotations

import torch

from thinkc.gist.rule import NEVER, GistMeta, Role
from thinkc.gist.sample import IGNORE_INDEX, GistSample


def first_fit(lengths: list[int], max_len: int) -> list[list[int]]:
    """Sample indices per row: each sample goes to the first row with room for it."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i, n in enumerate(lengths):
        if n > max_len:
            raise ValueError(f"sample {i} has {n} tokens, more than max_len={max_len}; raise max_len or drop it")
        for r, room in enumerate(free):
            if n <= room:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(max_len - n)
    return rows


def pack_samples(samples: list[GistSample], max_len: int, pad_id: int) -> list[GistSample]:
    """Pack `samples` into rows of exactly `max_len` tokens (padded). All samples must share flags."""
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    flags = {s.meta.flags for s in samples}
    if len(flags) > 1:
        raise ValueError(f"cannot pack samples with different gist flags: {sorted(map(str, flags))}")
    if len({s.meta.pos is None for s in samples}) > 1:
        raise ValueError("cannot pack physically reordered samples with sequence-order ones")
    return [_pack_row([samples[i] for i in row], max_len, pad_id) for row in first_fit([len(s) for s in samples], max_len)]


def _pack_row(samples: list[GistSample], max_len: int, pad_id: int) -> GistSample:
    ids, labels, pos, role, seg, doc, expire, order = ([] for _ in range(8))
    offset = seg_base = doc_base = 0
    for s in samples:
        m = s.meta
        ids.append(s.input_ids.long())
        labels.append(s.labels.long())
        pos.append(s.position_ids.long())
        role.append(m.role.to(torch.int8))
        s_seg, s_doc, s_exp = m.seg.to(torch.int32), m.doc.to(torch.int32), m.expire.to(torch.int32)
        seg.append(torch.where(s_seg >= 0, s_seg + seg_base, s_seg))
        doc.append(torch.where(s_doc >= 0, s_doc + doc_base, s_doc))
        expire.append(torch.where(s_exp >= NEVER, s_exp, s_exp + offset))
        if m.pos is not None:  # reordered samples: logical indices shift like expire
            order.append(m.pos.long() + offset)
        offset += len(s)
        seg_base += int(s_seg.max().clamp(min=-1)) + 1 if s_seg.numel() else 0
        doc_base += int(s_doc.max().clamp(min=-1)) + 1 if s_doc.numel() else 0
    pad = max_len - offset
    ids.append(torch.full((pad,), pad_id, dtype=torch.long))
    labels.append(torch.full((pad,), IGNORE_INDEX, dtype=torch.long))
    pos.append(torch.arange(pad, dtype=torch.long))  # the padding counts as one more "document"
    role.append(torch.full((pad,), int(Role.PAD), dtype=torch.int8))
    seg.append(torch.full((pad,), -1, dtype=torch.int32))
    doc.append(torch.full((pad,), -1, dtype=torch.int32))
    expire.append(torch.full((pad,), NEVER, dtype=torch.int32))
    order = torch.cat(order + [torch.arange(offset, max_len)]) if order else None
    meta = GistMeta(torch.cat(role), torch.cat(seg), torch.cat(doc), torch.cat(expire), samples[0].meta.flags, order)
    return GistSample(torch.cat(ids), torch.cat(labels), torch.cat(pos), meta)
