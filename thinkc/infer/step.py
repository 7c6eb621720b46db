"""The device side of one decode step (design.md §4): tensor work only, no per-row Python.

A step feeds one token per row (the generated token, or the next token of its gist block: a block
has a fixed width and streams in one token per step, so every decode step has the same shape) with
the step's mask built from slot metadata by the rule
(thinkc.gist.rule.visible, vectorised over the batch), runs the model on the static cache, and
returns the logits at each row's last real token. `decide` samples nothing itself: given the chosen
tokens it applies EOS / budget / trigger / forced-compression decisions, the measurements, the
expiry the rule gives a thought when its gist block is fed, and the keys to keep afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from thinkc.gist.rule import NEVER, Role, additive_mask, visible
from thinkc.infer.state import Rows, Slots


@dataclass
class GistTemplates:
    """The fixed-width block rows feed when a thought ends: col 0 is the generated token, then
    `with_trigger` ([<w>] I C [o]) for a forced end at thought level, or `plain` (I C [o]) when the
    token itself is the trigger (or at token level). Roles alike; `o_index` = column whose position
    the thought's keys expire at ([o], or just past the last cache token without one)."""

    tokens: torch.Tensor  # [3, W]: row 0 plain token, row 1 trigger-ended block, row 2 forced block
    roles: torch.Tensor  # [3, W]
    n: torch.Tensor  # [3] real widths
    o_index: torch.Tensor  # [3]
    width: int
    kept: int  # cache tokens + [o]: what stays of a block (the original's n + 1)

    @classmethod
    def build(cls, spec, device) -> "GistTemplates":
        body = [(t, Role.INSTR) for t in spec.instr_ids] + [(t, Role.CACHE) for t in spec.cache_ids]
        if spec.output_id is not None:
            body.append((spec.output_id, Role.OUTPUT))
        forced = [(0, Role.THOUGHT)]
        if spec.level == "thought" and spec.trigger_id is not None:
            forced.append((spec.trigger_id, Role.TRIGGER))
        forced += body
        ended = [(0, Role.THOUGHT)] + body
        if spec.anchor_generated:  # AnLLM: the generated anchor is the block; a forced end appends it
            ended = [(0, Role.CACHE)]
        W = len(forced)
        rows = [[(0, Role.THOUGHT)], ended, forced]
        tok = torch.zeros(3, W, dtype=torch.long)
        role = torch.full((3, W), int(Role.PAD), dtype=torch.long)
        for i, r in enumerate(rows):
            tok[i, :len(r)] = torch.tensor([t for t, _ in r])
            role[i, :len(r)] = torch.tensor([int(x) for _, x in r])
        n = torch.tensor([len(r) for r in rows])
        o_index = n - 1 if spec.output_id is not None else n  # no [o] (AnLLM): just past the anchor
        o_index[0] = NEVER
        kept = len(spec.cache_ids) + (spec.output_id is not None)
        return cls(tok.to(device), role.to(device), n.to(device), o_index.to(device), W, kept)


def step_queries(rows: Rows) -> tuple[dict, torch.Tensor]:
    """Query metadata [B, 1] of what each row feeds at this step: column feed_ptr of its feed (the
    generated token, then its gist block one token per step), and the bool [B] rows that feed."""
    live = rows.feed_ptr < rows.feed_n
    real = live[:, None]
    if rows.feed_token.shape[1] == 1:  # no gist block: column 0 is the only one
        pick = lambda t: t[:, :1]  # noqa: E731
    else:
        at = rows.feed_ptr.clamp(max=rows.feed_token.shape[1] - 1)[:, None]
        pick = lambda t: t.gather(1, at)  # noqa: E731
    q = {"token": pick(rows.feed_token), "pos": rows.next_pos[:, None],
         "role": torch.where(real, pick(rows.feed_role), 0), "seg": rows.feed_seg[:, None],
         "doc": real.long() - 1, "expire": torch.where(real, pick(rows.feed_expire), NEVER)}
    return q, live


def step_mask(slots: Slots, q: dict, rows_idx, kv_len: int, flags) -> torch.Tensor:
    """bool [b, W, kv_len]: the rule applied to the step's queries against the slots they will see."""
    k = slots.view(rows_idx, kv_len)
    return visible(q["pos"], q["role"], q["seg"], q["doc"], k.pos, k.role, k.seg, k.doc, k.expire, flags)


def gist_decisions(rows: Rows, slots: Slots, spec, tpl: GistTemplates, live, finished, tok,
                   exclude_continue: bool, may_sync: bool = False) -> torch.Tensor:
    """Which rows end a thought now; writes their gist block into feed_* and the thought's expiry
    into the slots. Returns the bool [B] `compress`. `may_sync` (CPU, where a host read costs
    nothing): when no row compresses, write what the general code writes for that case directly."""
    if spec.level == "token":
        close = torch.as_tensor(spec.close_ids, device=tok.device)
        if close.numel():
            rows.closed |= live & (rows.recent[:, -close.numel():] == close).all(1)
        ends = (rows.thought_len >= spec.step) & ~rows.closed
        is_trigger = torch.zeros_like(live)
    else:
        is_trigger = tok == (spec.trigger_id if spec.trigger_id is not None else -1)
        ends = is_trigger
        if spec.anchor_generated:
            ends = tok == spec.cache_ids[0]
    forced = rows.force.gather(1, rows.n_gen.clamp(max=rows.force.shape[1] - 1)[:, None])[:, 0]
    compress = live & ~finished & (ends | forced)
    if may_sync and not bool(compress.any()):
        _plain_feed(rows, tok, torch.where(is_trigger, int(Role.TRIGGER), int(Role.THOUGHT)))
        return compress
    if spec.anchor_generated:
        kind = torch.where(compress, torch.where(ends, 1, 2), 0)
    else:
        kind = torch.where(compress, torch.where(is_trigger | (spec.level == "token") | (spec.trigger_id is None), 1, 2), 0)
    rows.feed_token.copy_(tpl.tokens[kind])
    rows.feed_token[:, 0] = tok
    role0 = torch.where(is_trigger, int(Role.TRIGGER), int(Role.THOUGHT))
    if spec.anchor_generated:
        role0 = torch.where(compress & ends, int(Role.CACHE), role0)
    rows.feed_role.copy_(tpl.roles[kind])
    rows.feed_role[:, 0] = role0
    o_pos = rows.next_pos + tpl.o_index[kind]  # NEVER-ish for rows that do not compress
    compressible = (rows.feed_role == Role.THOUGHT) | (rows.feed_role == Role.TRIGGER) | (rows.feed_role == Role.INSTR)
    rows.feed_expire.copy_(torch.where(compress[:, None] & compressible, o_pos[:, None], NEVER))
    hit = (compress[:, None] & slots.valid & (slots.seg == rows.seg[:, None])
           & ((slots.role == Role.THOUGHT) | (slots.role == Role.TRIGGER) | (slots.role == Role.INSTR)))
    slots.expire = torch.where(hit, o_pos[:, None], slots.expire)
    if exclude_continue and spec.output_id is not None:  # the previous [o] stops at this [o]
        prev_o = compress[:, None] & slots.valid & (slots.role == Role.OUTPUT) & (slots.expire == NEVER)
        slots.expire = torch.where(prev_o, o_pos[:, None], slots.expire)
    rows.feed_n.copy_(torch.where(compress, tpl.n[kind], 1))
    return compress


def next_feed(engine, live, finished, tok) -> None:
    """The feed of every row that produced a token: the token alone, or its gist block (the engine's
    general path; `finished` rows feed nothing)."""
    R = engine.rows
    old = (R.feed_token.clone(), R.feed_role.clone(), R.feed_expire.clone(), R.feed_n.clone())
    if engine.tpl is not None:
        compress = gist_decisions(R, engine.slots, engine.spec, engine.tpl, live, finished, tok,
                                  engine.policy.exclude_continue, engine.may_sync)
        R.feed_seg = torch.where(live, R.seg, R.feed_seg)
        R.seg += compress
        R.thought_len = torch.where(compress, 0, R.thought_len)
        R.compressions += compress
    else:
        R.feed_token[:, 0], R.feed_role[:, 0], R.feed_expire[:, 0] = tok, int(Role.THOUGHT), NEVER
        R.feed_n.fill_(1)
        R.feed_seg = torch.where(live, R.seg, R.feed_seg)
    go = live & ~finished
    R.feed_token = torch.where(live[:, None], R.feed_token, old[0])
    R.feed_role = torch.where(live[:, None], R.feed_role, old[1])
    R.feed_expire = torch.where(live[:, None], R.feed_expire, old[2])
    R.feed_n = torch.where(go, R.feed_n, torch.where(live, 0, old[3]))
    R.feed_ptr = torch.where(live, 0, R.feed_ptr)


def _plain_feed(rows: Rows, tok, role0) -> None:
    """gist_decisions' writes when no row compresses (every row's template is kind 0: the token alone)."""
    rows.feed_token.zero_()
    rows.feed_token[:, 0] = tok
    rows.feed_role.fill_(int(Role.PAD))
    rows.feed_role[:, 0] = role0
    rows.feed_expire.fill_(NEVER)
    rows.feed_n.fill_(1)


def block_rest(engine, logits, vis_last):
    """bi_directional: a block's cache tokens see each other, so the rest of each block is fed in
    one more forward of those rows alone (instead of streaming one token per step); DecodeEngine's
    step calls it after the width-1 forward. Returns the logits and visible-key counts updated."""
    R = engine.rows
    r = torch.tensor([s for s, x in enumerate(engine._left) if x > 1], device=engine.device)
    n_real = R.feed_n[r] - R.feed_ptr[r]
    W = engine.Wb - 1
    kv_len = engine.hi + W
    engine._ensure(kv_len)
    ar = torch.arange(W, device=engine.device)[None, :]
    real = ar < n_real[:, None]
    cols = (R.feed_ptr[r][:, None] + ar).clamp(max=engine.Wb - 1)
    pick = lambda t: t[r].gather(1, cols)  # noqa: E731
    q = {"token": pick(R.feed_token), "pos": R.next_pos[r][:, None] + ar, "role": torch.where(real, pick(R.feed_role), 0),
         "seg": R.feed_seg[r][:, None].expand(-1, W), "doc": torch.where(real, 0, -1),
         "expire": torch.where(real, pick(R.feed_expire), NEVER)}
    index = engine.cache.lengths[r].long()[:, None] + ar
    lg, vl = engine._forward(r, q, index, kv_len, (n_real - 1).clamp(min=0), want_vis=True, rest=True)
    engine.cache.lengths[r] += n_real.to(torch.int32)
    engine.hi += W
    R.peak[r] = torch.maximum(R.peak[r], engine.cache.lengths[r].long())
    R.next_pos[r] += n_real
    R.feed_ptr[r] += n_real
    logits[r], vis_last[r] = lg, vl
    return logits, vis_last


def additive(vis: torch.Tensor, dtype) -> torch.Tensor:
    return additive_mask(vis, dtype)[:, None]
