"""The gist attention rule: who sees whom. The single source of truth (design.md §3).

Every fast path in thinkc (mask_mod, the C++/CUDA block-mask builder, packing, in-place KV
compaction at inference) is tested for exact equality against `reference_mask` below.

Per-token metadata of one row (all 1-D, length L, or batched [B, L]):

    role    Role of the token (see `Role`).
    seg     Compression segment: thought i (or prompt sentence i in `aug` / `recover`) and its
            trigger, instruction, cache tokens and `[o]` all carry seg = i; a recovery copy of
            thought i carries i too. -1 for tokens outside segments.
    doc     Sample id inside a packed row (0, 1, ...); -1 for padding.
    expire  First query index that may no longer see this key (`compute_expire`); NEVER if none.

The rule (q = query index, k = key index, both in the same row):

    | condition                                   | visible(q, k)                                   |
    |---------------------------------------------|-------------------------------------------------|
    | base                                        | doc[q] == doc[k] != -1  and  k <= q < expire[k] |
    | q is a CACHE token, see_current             | base and seg[k] == seg[q]  (only S_i .. C_i)    |
    | q, k CACHE tokens of one C_i, bi_directional| True (k may be after q)                         |
    | q, k CACHE tokens of one C_i, diagonal      | k == q (a cache token sees no sibling)          |

Only role CACHE takes the flags: CACHE_PLAIN (a prompt block's cache token under plain prefill)
is a cache token whose row is plain causal. `expire[k]`, all from role / seg / doc:

    | key k                                            | expire[k]                                   |
    |--------------------------------------------------|---------------------------------------------|
    | S_i, trigger, instruction; prompt sentence i     | index just past C_i (the `[o]` if present)  |
    | prompt sentence, plain prefill (doc has a        | R: start of the doc's first thought block;  |
    |   CACHE_PLAIN token)                             |   no thought block: end of the last prompt  |
    |                                                  |   block if its cache role is CACHE, else    |
    |                                                  |   the doc's end (a prompt fed for decoding) |
    | `[o]` of segment i, exclude_continue             | index of the doc's next `[o]`               |
    | before a RECOVER segment (recover mode): keys at | min(expire, first RECOVER index): the       |
    |   or after the end of the last gist block, and   |   recovery sees only the prompt and the     |
    |   every token of a thought it does not recover   |   gist blocks of the thoughts it rebuilds   |
    | anything else (prompt, C_i, `[o]`, answer, pad)  | NEVER                                       |

A segment with no cache tokens (an unfinished thought, a trimmed block) never expires. At inference
the same `expire` drives compaction: once decoding reaches position p, every key with expire <= p
is dropped.

The original LightThinker (zjunlp/LightThinker, code over docs) in these terms; the flags of its
train.py / ARGS.md and its config JSON on the left, thinkc's GistConfig on the right:

    | original                                       | thinkc                                     |
    |------------------------------------------------|--------------------------------------------|
    | --mode normal / aug / aug-wo-pc / recover      | mode, same names and meaning               |
    | --see_current / --bi_directional / --diagonal  | see_current / bi_directional / diagonal    |
    | --exclude_continue                             | exclude_continue                           |
    | --prefill_compress true: the prompt square     | prefill_compress=true (the default):       |
    |   keeps the sentence-level gist rule           |   prompt blocks are CACHE                  |
    | --prefill_compress false: the prompt square is | prefill_compress=false: prompt blocks are  |
    |   reset to lower-triangular up to the first    |   CACHE_PLAIN, sentences expire at R (the  |
    |   thought (flags on its cache rows cleared)    |   row above)                               |
    | aug prompt: per sentence of system prompt and  | level=thought: split_sentences of `system` |
    |   question, n comp tokens, no instruction, no  |   and `question`, each + n cache tokens;   |
    |   continue; template text kept (save_template) |   chat-template text kept plain            |
    | recover: <|recover|> + each compressed         | recover: RECOVER tokens (<|recover|>,      |
    |   thought's own tokens (split token included)  |   S_i <w> copies with seg i, EOS); the     |
    |   + EOS; sees prompt + their gist blocks only; |   positions restart at 1 + the last key    |
    |   positions restart after the last key it sees |   they see; thoughts that do not fit are   |
    |   (the last [o]); thoughts that do not fit in  |   left out (the first that does not fit    |
    |   max_length - len - 2 are left out            |   ends the list)                           |
    | --hybrid true (aug / recover): one more row    | hybrid: build_record_samples adds the      |
    |   per sample: <|recover|> + prompt sentences   |   prompt-recovery sample (its recovery is  |
    |   + EOS after the compressed prompt            |   role ANSWER: plain aug rule)             |
    | max_length: samples cut at max_length          | max_length: trimmed (a prefix); the old    |
    |                                                |   drop: build_samples(overlong="drop"),    |
    |                                                |   thinkc train data.overlong=drop          |
    | output.level sentence / token, step, n_token   | level thought / token, step, n_cache       |
    | --output_compress_instruction                  | output_compress_instruction                |
    | --train_on_input                               | train_on_input                             |
    | split token <|splitter|> after "thought\\n"    | trigger <w> after the thought              |
    | continue token <|continue|>                    | output_token [o]                           |
    | comp tokens <|o_i|> (shared prompt / output)   | cache_token_format <|c_{i}|>               |
    | AnLLM/: "thought\\n" + anchor, anchor trained  | anllm=true (preset "anllm"): no trigger,   |
    |   and generated, no continue, see_current      |   S_i + "\\n" + anchor (trained), no [o]   |
    | inference --compress_prompt                    | modes aug / recover (thinkc.infer)         |
    | inference --rolling_rope                       | not implemented: absolute positions        |

Where the original's mask builder has quirks they are kept: with plain prefill and no thought block
(the hybrid prompt-recovery sample) its last prompt block keeps its flags and the sentences expire at
its end (the layout then gives that block role CACHE). One is not: the original skips `diagonal` for a
block that a cut leaves at the very end of a sample; those rows feed no loss, thinkc applies it.
Layout differences outside the mask: at token level the original compresses its whole output (answer
and EOS included), thinkc the thinking only; thinkc's chat template may add a default system prompt,
which stays plain text (only the record's `system` is compressed).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Optional

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
    ANSWER = 7  # answer text, EOS (and the hybrid prompt-recovery text)
    CACHE_PLAIN = 8  # a prompt block's cache token under plain prefill: kept, row plain causal
    RECOVER = 9  # recover mode: <|recover|>, the copies of the thoughts (seg = theirs), EOS


COMPRESSIBLE = (Role.THOUGHT, Role.TRIGGER, Role.INSTR)
CACHE_ROLES = (Role.CACHE, Role.CACHE_PLAIN)


@dataclass(frozen=True)
class GistFlags:
    """Flags that change visibility for CACHE-token queries (exclude_continue acts through `expire`
    and is an argument of `compute_expire`; prefill_compress acts through the roles)."""

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
    # Logical index of each token in the row (the q/k positions of `visible`) when the row is stored
    # physically reordered (thinkc.gist.reorder); None = sequence order (index == logical position).
    pos: Optional[torch.Tensor] = None

    def to(self, device) -> "GistMeta":
        pos = None if self.pos is None else self.pos.to(device)
        return GistMeta(*(t.to(device) for t in (self.role, self.seg, self.doc, self.expire)), self.flags, pos)

    def __len__(self) -> int:
        return self.role.shape[-1]

    def batched(self) -> "GistMeta":
        if self.role.dim() == 2:
            return self
        pos = None if self.pos is None else self.pos.unsqueeze(0)
        return GistMeta(*(t.unsqueeze(0) for t in (self.role, self.seg, self.doc, self.expire)), self.flags, pos)

    def positions(self) -> torch.Tensor:
        """The logical index of every token (`pos`, or 0..L-1 in sequence order), shaped like `role`."""
        if self.pos is not None:
            return self.pos
        return torch.arange(self.role.shape[-1], device=self.role.device).expand(self.role.shape)


def compute_expire(
    role: torch.Tensor,
    seg: torch.Tensor,
    doc: torch.Tensor,
    *,
    exclude_continue: bool = False,
) -> torch.Tensor:
    """`expire` for one row (1-D tensors) from roles, segments and sample ids. See the tables above:
    plain prefill and recovery are read from the roles (CACHE_PLAIN, RECOVER), so the metadata alone
    fixes the mask (a packed row gives the same `expire` as its samples)."""
    role, seg, doc = role.long().cpu(), seg.long().cpu(), doc.long().cpu()
    L = role.numel()
    expire = torch.full((L,), NEVER, dtype=torch.int64)
    idx = torch.arange(L)
    thought_body = _isin(role, COMPRESSIBLE) & (seg >= 0)
    prompt_body = (role == Role.PROMPT) & (seg >= 0)
    cache = _isin(role, CACHE_ROLES)
    closed = torch.zeros(L, dtype=torch.bool)  # body tokens of segments that have cache tokens
    for s in torch.unique(seg[seg >= 0]).tolist():
        in_seg = seg == s
        cache_idx = idx[in_seg & cache]
        if cache_idx.numel():
            body = in_seg & (thought_body | prompt_body)
            expire[body] = int(cache_idx.max()) + 1
            closed |= body
    for d in torch.unique(doc[doc >= 0]).tolist():
        in_doc = doc == d
        _plain_prefill(expire, role, in_doc, prompt_body & closed, thought_body & closed)
        if exclude_continue:
            outs = idx[in_doc & (role == Role.OUTPUT)].tolist()
            for a, b in zip(outs, outs[1:]):
                expire[a] = b
        _recovery(expire, role, seg, in_doc, thought_body & closed, cache)
    return expire.to(torch.int32)


def _isin(x: torch.Tensor, roles) -> torch.Tensor:
    return torch.isin(x, torch.tensor([int(r) for r in roles], dtype=x.dtype))


def _plain_prefill(expire, role, in_doc, prompt_body, thought_body) -> None:
    """prefill_compress=false (a CACHE_PLAIN token in the doc): the prompt sentences stay visible
    until R, the start of the doc's first thought block (see the table)."""
    if not (in_doc & (role == Role.CACHE_PLAIN)).any():
        return
    idx = torch.arange(role.numel())
    first_thought = idx[in_doc & thought_body]
    if first_thought.numel():
        end = int(first_thought.min())
    else:
        last_cache = int(idx[in_doc & _isin(role, CACHE_ROLES)].max())
        end = last_cache + 1 if role[last_cache] == Role.CACHE else int(idx[in_doc].max()) + 1
    expire[in_doc & prompt_body] = end


def _recovery(expire, role, seg, in_doc, thought_body, cache) -> None:
    """recover mode: RECOVER rows see the prompt and the gist blocks of the thoughts they rebuild;
    the answer, EOS and the other thoughts' blocks expire where the recovery starts."""
    idx = torch.arange(role.numel())
    rec = in_doc & (role == Role.RECOVER)
    if not rec.any():
        return
    start = int(idx[rec].min())
    before = in_doc & (idx < start)
    blocks = torch.unique(seg[before & cache & (seg >= 0)])
    if not blocks.numel():
        return
    last_end = int(idx[before & torch.isin(seg, blocks)].max()) + 1
    thoughts = torch.unique(seg[before & thought_body])
    recovered = torch.unique(seg[rec & (seg >= 0)])
    skipped = thoughts[~torch.isin(thoughts, recovered)]
    hide = before & ((idx >= last_end) | torch.isin(seg, skipped))
    expire[hide] = torch.clamp(expire[hide], max=start)


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
    """Dense boolean mask [B, L, L] (True = q may attend to k). Readable, O(L^2): the reference.
    A physically reordered row (meta.pos set) gives the sequence-order mask with rows and columns
    permuted alike: the rule only ever sees logical positions."""
    m = meta.batched()
    pos = m.positions()
    return visible(pos, m.role, m.seg, m.doc, pos, m.role, m.seg, m.doc, m.expire, m.flags)


def additive_mask(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float mask for SDPA/eager: 0 where visible, dtype-min elsewhere. Rows with nothing visible
    (padding queries) get a uniform softmax instead of NaN; their outputs are ignored."""
    out = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    return out.masked_fill_(~visible, torch.finfo(dtype).min)
