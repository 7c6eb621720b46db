"""The decode engine's host-driven gist path: LightThinker-style streaming blocks with the general
step's per-slot work replaced by what the host already knows. It takes runs whose gist spec is
thought level (a trigger, or forced ends), without CACHE flags, exclude_continue or a generated
anchor, with no eviction, attention scores or prompt metadata: LightThinker as trained here.

There the rule (thinkc.gist.rule.visible) reduces to this, row by row:
  * every real key is visible to the row's query, except at the query of a block's `[o]`: the
    thought it compresses (its generated tokens since the last block, the trigger and the
    instruction tokens: slots [thought start, block start + m), `m` = the block's leading
    THOUGHT / TRIGGER / INSTR columns) has expire = the [o]'s position and is hidden there;
  * after the step that feeds a block's last token those keys are dropped (one compact_kv call, the
    general path's `keep`), and the next thought starts at the row's new length;
  * a row that does not feed sees nothing.
The mask is kept as the plain path's additive bias (thinkc.infer.plain); the host keeps each row's
feed (its next token, or the rest of its gist block), lengths, positions and measurements (the
general path's formulas: dependency = prompt + current thought + kept x compressions, peak KV after
each forward, kept keys after each emitting step) and reads the chosen tokens once per step.
Admission (prefill and first token) stays on the general path; `gist_admitted` takes over its results.
tests/test_infer_plain.py checks tokens, logits (bit for bit), measurements and masks against the
general path."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from thinkc.gist.rule import Role
from thinkc.infer.plain import _bias, plain_results
from thinkc.infer.recording import record_fed, record_logits

BODY = (int(Role.THOUGHT), int(Role.TRIGGER), int(Role.INSTR))  # roles that expire with their thought


@dataclass
class GistRow:
    """A row's state and results on the host (tokens, trace, dependency, peak: see plain.HostRow)."""

    tokens: list
    trace: list
    dependency: int
    peak: int
    pos: int  # next absolute position
    feed: list  # (token, role) still to feed, the next first
    force: list  # forced compression after the n-th generated token
    prompt_len: int
    thought_start: int  # slot where the current thought starts
    thought_len: int = 0
    compressions: int = 0
    hide: tuple | None = None  # slots the block's [o] does not see, dropped after the block
    seg: int = 0  # the current thought
    feed_seg: int = 0  # the thought of what the row feeds (a block belongs to the thought it compresses)


def is_gist_fast(engine, metas) -> bool:
    spec, p = engine.spec, engine.policy
    return (spec is not None and spec.level == "thought" and not spec.anchor_generated and not p.flags.any
            and not p.exclude_continue and engine.stream_blocks and not engine.budgeted
            and not p.needs_attention and all(m is None for m in metas))


def gist_admitted(engine, slots: list[int]) -> None:
    """After the general admission of `slots`: their state moves to the host."""
    R, dev = engine.rows, engine.device
    r = torch.tensor(slots, device=dev)
    per_row = torch.stack([R.tokens[r, 0], R.trace[r, 0], R.dependency[r], R.peak[r], engine.cache.lengths[r].long(),
                           R.next_pos[r], R.prompt_len[r], R.thought_len[r], R.compressions[r], R.feed_ptr[r],
                           R.feed_n[r], R.seg[r], R.feed_seg[r]]).tolist()
    toks, roles, force = R.feed_token[r].tolist(), R.feed_role[r].tolist(), R.force[r].tolist()
    for j, s in enumerate(slots):
        tok, kept, dep, peak, length, pos, plen, tlen, comp, ptr, n, seg, fseg = (v[j] for v in per_row)
        feed = list(zip(toks[j], roles[j]))[ptr:n]
        h = GistRow([tok], [kept], dep, peak, pos, feed, force[j], plen, length, tlen, comp, seg=seg, feed_seg=fseg)
        if len(feed) > 1:  # the first token ended a thought: an empty thought, its block comes next
            h.hide = (length, length + sum(1 for _, rl in feed if rl in BODY))
        engine._host[s] = h
    bias = _bias(engine)
    real = torch.arange(bias.shape[1], device=dev)[None, :] < engine.cache.lengths[r].long()[:, None]
    real &= (R.feed_ptr[r] < R.feed_n[r])[:, None]
    bias[r] = torch.where(real, 0.0, torch.finfo(bias.dtype).min).to(bias.dtype)
    _refresh(engine)


def _refresh(engine) -> None:
    """Which rows feed (and how much is left), as the engine's host view and the step's device tensors."""
    H = engine._host
    engine._left = [len(H[s].feed) if s in H and not engine._finished[s] else 0 for s in range(engine.B)]
    live = torch.tensor([x > 0 for x in engine._left], dtype=torch.bool, device=engine.device)
    low = torch.finfo(engine.dtype).min
    engine._live = (live, live.to(torch.int32), live.long(), torch.where(live, 0.0, low).to(engine.dtype)[:, None])
    engine._emitting = sum(1 for x in engine._left if x == 1)


def gist_step(engine) -> int:
    """DecodeEngine._decode_step for host-driven gist rows. Returns the rows that emitted."""
    cache, H, B = engine.cache, engine._host, engine.B
    kv_len = engine.step_kv_len()
    bias, low = _bias(engine), torch.finfo(engine.dtype).min
    live, live_i32, _, live_bias = engine._live
    fed = [H[s].feed[0] if engine._left[s] else (0, 0) for s in range(B)]
    for s in range(B):
        h = H.get(s)
        if engine._left[s] == 1 and h.hide is not None and fed[s][1] == int(Role.OUTPUT):
            bias[s, h.hide[0]:h.hide[1]] = low  # the [o] does not see the thought it compresses
    meta = torch.tensor([[t for t, _ in fed], [H[s].pos if s in H else 0 for s in range(B)]], device=engine.device)
    index = cache.lengths.long()[:, None]
    bias.scatter_(1, index, live_bias)
    q = {"token": meta[0][:, None], "pos": meta[1][:, None]}
    if engine.record:
        q |= {"role": torch.tensor([[rl] for _, rl in fed], device=engine.device), "doc": live.long()[:, None] - 1,
              "seg": torch.tensor([[H[s].feed_seg if s in H else 0] for s in range(B)], device=engine.device)}
        record_fed(engine, None, q)
    cache.set_write(None, index, kv_len)
    fwd = engine._compiled if engine._compiled is not None else engine._model_forward
    try:
        logits = fwd(q["token"], q["pos"], bias[:, None, None, :kv_len], None)
    finally:
        cache.clear_write()
    if engine.record:
        record_logits(engine, None, q, engine._zeros, logits, False)
    cache.lengths += live_i32
    emit = [x == 1 for x in engine._left]
    greedy = engine.sampling.greedy
    tok = engine._choose(logits, live if greedy else torch.tensor(emit, device=engine.device))
    n_emit = engine._emitting
    _host_decide(engine, tok.tolist(), emit)
    engine.steps += 1
    return n_emit


def _templates(engine):
    """The gist block templates on the host: per kind (1: the token is the trigger, 2: a forced end)
    the (token, role) columns after column 0 (GistTemplates)."""
    t = getattr(engine, "_tpl_host", None)
    if t is None:
        tpl = engine.tpl
        toks, roles, n = tpl.tokens.tolist(), tpl.roles.tolist(), tpl.n.tolist()
        t = engine._tpl_host = {k: list(zip(toks[k][1:n[k]], roles[k][1:n[k]])) for k in (1, 2)}
    return t


def _block(engine, h: GistRow, t: int, is_trigger: bool, length: int) -> list:
    """The feed of a row that ends its thought with token t (gist_decisions' template), and what its [o]
    must not see: the thought so far plus the block's leading body columns."""
    kind = 1 if (is_trigger or engine.spec.trigger_id is None) else 2
    feed = [(t, int(Role.TRIGGER) if is_trigger else int(Role.THOUGHT))] + _templates(engine)[kind]
    body = 0
    while body < len(feed) and feed[body][1] in BODY:
        body += 1
    h.hide = (h.thought_start, length + body)
    h.compressions += 1
    h.thought_len = 0
    h.seg += 1
    return feed


def _host_decide(engine, toks: list[int], emit: list[bool]) -> None:
    """DecodeEngine._decide for host-driven gist rows: a row that fed a token moves on; one whose feed
    is done emits, ends a finished block (its thought's keys go), and may end its thought."""
    H, lens, spec = engine._host, engine._lengths, engine.spec
    eos, budget, kept_per_block = engine._eos_set, engine.max_new, engine.tpl.kept
    done, drops = [False] * engine.B, {}
    for s in range(engine.B):
        if not engine._left[s]:
            continue
        h = H[s]
        lens[s] += 1
        h.pos += 1
        h.peak = max(h.peak, lens[s])
        h.feed.pop(0)
        if not emit[s]:
            continue
        t = toks[s]
        h.tokens.append(t)
        h.thought_len += 1
        done[s] = t in eos or len(h.tokens) >= budget
        h.dependency += h.prompt_len + h.thought_len + kept_per_block * h.compressions
        kept = lens[s]
        if h.hide is not None:  # the block ended: its thought's keys go (kept in place if the row is done)
            a, b = h.hide
            kept -= b - a
            if not done[s]:
                drops[s] = (a, b)
            h.hide, h.thought_start = None, kept
        h.trace.append(kept)
        h.feed_seg = h.seg
        is_trigger = spec.trigger_id is not None and t == spec.trigger_id
        forced = h.force[min(len(h.tokens), len(h.force) - 1)]
        if not done[s] and (is_trigger or forced):
            h.feed = _block(engine, h, t, is_trigger, kept)  # kept: its length once this step's block is gone
        else:
            h.feed = [(t, int(Role.TRIGGER) if is_trigger else int(Role.THOUGHT))]
    if drops:
        _compact(engine, drops)
    engine.hi = max(lens)
    engine._finished = done
    low = torch.finfo(engine.dtype).min
    for s in (s for s, d in enumerate(done) if d):
        _bias(engine)[s] = low
    if any(done):  # the rows that feed changed: the step's device tensors too
        _refresh(engine)
    else:
        engine._left = [len(H[s].feed) if x else 0 for s, x in enumerate(engine._left)]
        engine._emitting = sum(1 for x in engine._left if x == 1)
    engine._block_ends = False


def _compact(engine, drops: dict) -> None:
    """Drop the ended blocks' thoughts from the cache (one compact_kv call for every layer); the rows'
    masks follow (their kept keys, [0, new length), are all visible)."""
    lens, bias = engine._lengths, _bias(engine)
    old = {s: lens[s] for s in drops}
    for s, (a, b) in drops.items():
        lens[s] -= b - a
    rows = [[(0, drops[s][0]), (drops[s][1], old[s])] if s in drops else ([(0, L)] if L else [])
            for s, L in enumerate(lens)]
    engine.cache.compact(rows, check=False)
    low = torch.finfo(bias.dtype).min
    for s, (a, _) in drops.items():
        bias[s, a:lens[s]] = 0.0
        bias[s, lens[s]:old[s]] = low
