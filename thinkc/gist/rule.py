"""The gist attention rule: who sees whom. The single source of truth (design.md §3).

Every fast path in thinkc (mask_mod, the C++/CUDA block-mask builder, packing, in-place KV
compaction at inference) is tested for exact equality against `reference_mask` below.

Per-token metadata of one row (all 1-D, length L, or batched [B, L]):

    role    Role of the token (see `Role`).
    seg     Compression segment: thought i (or prompt sentence i in `aug` mode) and its trigger,
            instruction, cache tokens and `[o]` all carry seg = i. -1 for tokens outside segments.
    doc     Sample id inside a packed row (0, 1, ...); -1 for padding.
    expire  First query index that may no longer see this key (`compute_expire`); NEVER if none.

The rule (q = query index, k = key index, both in the same row):

    | condition                                   | visible(q, k)                                   |
    |---------------------------------------------|-------------------------------------------------|
    | base                                        | doc[q] == doc[k] != -1  and  k <= q < expire[k] |
    | q is a cache token, see_current             | base and seg[k] == seg[q]  (only S_i .. C_i)    |
    | q, k cache tokens of one C_i, bi_directional| True (k may be after q)                         |
    | q, k cache tokens of one C_i, diagonal      | k == q (a cache token sees no sibling)          |

`expire[k]` (with the flags that act through it):

    | key k                                          | expire[k]                                     |
    |------------------------------------------------|-----------------------------------------------|
    | S_i, trigger, instruction of segment i         | index just past C_i (the `[o]` if present)    |
    | same, prompt segment, prefill_compress          | first thought/answer index of its sample      |
    | `[o]` of segment i, exclude_continue            | index of the next segment's `[o]`             |
    | anything else (prompt, C_i, `[o]`, answer, pad) | NEVER                                         |

A segment with no cache tokens yet (an unfinished thought) never expires. At inference the same
`expire` drives compaction: once decoding reaches position p, every key with expire <= p is dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import torch

NEVER = 2**30  # "expires never": larger than any sequence length thinkc handles


class Role(IntEnum):
    PAD = 0
    PROMPT = 1
    THOUGHT = 2  # S_i (also answer paragraphs when the answer is segmented)
    TRIGGER = 3  # <w>, ends a thought
    INSTR = 4  # optional output_compress_instruction tokens
    CACHE = 5  # <|c_j|> gist tokens
    OUTPUT = 6  # [o]
    ANSWER = 7  # answer text, EOS, recovery segment


COMPRESSIBLE = (Role.THOUGHT, Role.TRIGGER, Role.INSTR)


@dataclass(frozen=True)
class GistFlags:
    """Flags that change visibility for cache-token queries (the ones acting through `expire`,
    exclude_continue and prefill_compress, are arguments of `compute_expire`)."""

    see_current: bool = False
    bi_directional: bool = False
    diagonal: bool = False

    @property
    def any(self) -> bool:
        return self.see_current or self.bi_directional or self.diagonal


@dataclass
class GistMeta:
    """Per-token metadata of a row (or a batch of rows). Tensors are int8/int32 on any device."""

    role: torch.Tensor
    seg: torch.Tensor
    doc: torch.Tensor
    expire: torch.Tensor
    flags: GistFlags = field(default_factory=GistFlags)

    def to(self, device) -> "GistMeta":
        return GistMeta(*(t.to(device) for t in (self.role, self.seg, self.doc, self.expire)), self.flags)

    def __len__(self) -> int:
        return self.role.shape[-1]

    def batched(self) -> "GistMeta":
        if self.role.dim() == 2:
            return self
        return GistMeta(*(t.unsqueeze(0) for t in (self.role, self.seg, self.doc, self.expire)), self.flags)


def compute_expire(
    role: torch.Tensor,
    seg: torch.Tensor,
    doc: torch.Tensor,
    *,
    exclude_continue: bool = False,
    prefill_compress: bool = False,
) -> torch.Tensor:
    """`expire` for one row (1-D tensors) from roles, segments and sample ids. See the table above."""
    role, seg, doc = role.long().cpu(), seg.long().cpu(), doc.long().cpu()
    L = role.numel()
    expire = torch.full((L,), NEVER, dtype=torch.int64)
    idx = torch.arange(L)
    compressible = (role == Role.THOUGHT) | (role == Role.TRIGGER) | (role == Role.INSTR)
    compressible |= (role == Role.PROMPT) & (seg >= 0)
    for s in torch.unique(seg[seg >= 0]).tolist():
        in_seg = seg == s
        cache_idx = idx[in_seg & (role == Role.CACHE)]
        if cache_idx.numel():
            expire[in_seg & compressible] = int(cache_idx.max()) + 1
    if prefill_compress:
        for d in torch.unique(doc[doc >= 0]).tolist():
            in_doc = doc == d
            body = idx[in_doc & ((role == Role.THOUGHT) | (role == Role.ANSWER) | (role == Role.TRIGGER))]
            if body.numel():
                prompt_seg = in_doc & (role == Role.PROMPT) & (seg >= 0)
                expire[prompt_seg] = int(body.min())
    if exclude_continue:
        for d in torch.unique(doc[doc >= 0]).tolist():
            outs = idx[(doc == d) & (role == Role.OUTPUT)].tolist()
            for a, b in zip(outs, outs[1:]):
                expire[a] = b
    return expire.to(torch.int32)


def visible(
    q_pos, q_role, q_seg, q_doc,
    k_pos, k_role, k_seg, k_doc, k_expire,
    flags: GistFlags,
) -> torch.Tensor:
    """The rule for any set of queries against any set of keys, by absolute position in the
    augmented sequence. Query tensors are [B, Q], key tensors [B, K]; returns bool [B, Q, K].
    `reference_mask` is this with queries = keys = the whole row; inference applies it to new
    tokens against the (compacted) cache."""
    qp, kp = q_pos.long()[:, :, None], k_pos.long()[:, None, :]
    same_doc = (q_doc.long()[:, :, None] == k_doc.long()[:, None, :]) & (k_doc[:, None, :] >= 0)
    vis = same_doc & (kp <= qp) & (qp < k_expire.long()[:, None, :])
    if flags.any:
        q_cache = (q_role == Role.CACHE)[:, :, None]
        same_seg = (q_seg.long()[:, :, None] == k_seg.long()[:, None, :]) & (k_seg[:, None, :] >= 0)
        if flags.see_current:
            vis &= ~q_cache | same_seg
        sibling = q_cache & (k_role == Role.CACHE)[:, None, :] & same_seg & same_doc
        if flags.diagonal:
            vis = torch.where(sibling, qp == kp, vis)
        elif flags.bi_directional:
            vis = vis | sibling
    return vis


def reference_mask(meta: GistMeta) -> torch.Tensor:
    """Dense boolean mask [B, L, L] (True = q may attend to k). Readable, O(L^2): the reference."""
    m = meta.batched()
    B, L = m.role.shape
    pos = torch.arange(L, device=m.role.device).expand(B, L)
    return visible(pos, m.role, m.seg, m.doc, pos, m.role, m.seg, m.doc, m.expire, m.flags)


def additive_mask(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float mask for SDPA/eager: 0 where visible, dtype-min elsewhere. Rows with nothing visible
    (padding queries) get a uniform softmax instead of NaN; their outputs are ignored."""
    out = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    return out.masked_fill_(~visible, torch.finfo(dtype).min)
