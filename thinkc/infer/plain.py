"""The decode engine's plain path: the general step (thinkc.infer.step, DecodeEngine._decode_step and
_decide) with the terms that are constant for plain rows left out. Plain = no gist spec, no eviction
(`keep`), no attention scores (H2O), no CACHE flags, and no prompt metadata in the run: vanilla decoding.

What is constant there, and why:
  * every row feeds exactly its generated token (feed width 1, role THOUGHT, segment 0, expire
    NEVER); a row that fed emits at once, so its feed pointer ends where it started;
  * no slot ever expires (prefill and every step write expire = NEVER, nothing else writes it) and
    every real key has doc 0 and a position below the query's, so the rule
    (thinkc.gist.rule.visible: same doc, k <= q < expire[k]) gives a row that feeds exactly its real
    keys, slots [0, length) after the step's own key is written, and a row that does not feed nothing;
  * the keys kept after a step are those slots: `kept` is the row's length; nothing is compacted;
    the keys the step's query saw are that length too.
So the step keeps that mask itself, as the additive float mask SDPA takes (`bias` [B, capacity]:
0 on a feeding row's real keys, dtype-min elsewhere; the step's mask is a view of it), and writes no
slot metadata (only prefill does, through the general path; no plain step reads it). The host knows
which rows feed and their lengths, and reads the chosen tokens once per step (the step's one host
read), so it keeps the rest itself: generated tokens, EOS / budget ends, peak KV, dependency and the
per-step kept keys. Admission stays on the general path; `plain_admitted` takes over its results.
The device keeps cache lengths, next positions and the next feed token; a row's other device state
(its measurements, segment, thought length, recent tokens, feed role/expiry, `active`) is read by
the general path only and is not kept up to date here.
tests/test_infer_plain.py checks this path against the general one: the same tokens, logits bit for
bit and measurements, and at every step the same mask as the rule's."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from thinkc.infer.recording import record_fed, record_logits
from thinkc.infer.step import step_queries


@dataclass
class HostRow:
    """A plain row's results, kept on the host."""

    tokens: list = field(default_factory=list)
    trace: list = field(default_factory=list)  # keys kept after each step
    dependency: int = 0
    peak: int = 0
    compressions: int = 0  # always 0 here; thinkc.infer.gistpath.GistRow counts them


def is_plain(engine, metas) -> bool:
    """Whether a run of `engine` over prompts with these prompt metadata can take the plain path."""
    p = engine.policy
    return (engine.spec is None and not engine.budgeted and not p.needs_attention and not p.flags.any
            and all(m is None for m in metas))


def plain_admitted(engine, slots: list[int]) -> None:
    """After the admission of `slots` (prefill and first token, general path): their results so far
    move to the host, and the mask row of one that feeds is its prompt's keys."""
    R, dev = engine.rows, engine.device
    r = torch.tensor(slots, device=dev)
    first = torch.stack([R.tokens[r, 0], R.trace[r, 0], R.dependency[r], R.peak[r]]).tolist()
    for s, tok, kept, dep, peak in zip(slots, *first):
        engine._host[s] = HostRow([tok], [kept], dep, peak)
    bias = _bias(engine)
    real = torch.arange(bias.shape[1], device=dev)[None, :] < engine.cache.lengths[r].long()[:, None]
    real &= (R.feed_ptr[r] < R.feed_n[r])[:, None]
    bias[r] = torch.where(real, 0.0, torch.finfo(bias.dtype).min).to(bias.dtype)
    _set_live(engine)


def _bias(engine) -> torch.Tensor:
    C, low = engine.cache.capacity, torch.finfo(engine.dtype).min
    bias = getattr(engine, "_bias", None)
    if bias is None or bias.shape[1] != C:  # first plain run, or the cache grew
        new = torch.full((engine.B, C), low, dtype=engine.dtype, device=engine.device)
        if bias is not None:
            new[:, :bias.shape[1]] = bias
        engine._bias = bias = new
    return bias


def _set_live(engine) -> None:
    """The rows that feed at the next step (`_left` is 1 for them, else 0), as the device tensors the
    step adds and writes (rebuilt only when a row joins or leaves)."""
    live = torch.tensor(engine._left, dtype=torch.bool, device=engine.device)
    low = torch.finfo(engine.dtype).min
    engine._live = (live, live.to(torch.int32), live.long(),
                    torch.where(live, 0.0, low).to(engine.dtype)[:, None])


def plain_step(engine) -> int:
    """DecodeEngine._decode_step for plain rows. Returns the rows that emitted."""
    R, cache = engine.rows, engine.cache
    kv_len = engine.step_kv_len()
    bias = _bias(engine)
    live, live_i32, live_long, live_bias = engine._live
    index = cache.lengths.long()[:, None]
    bias.scatter_(1, index, live_bias)  # the step's key: visible to its row if the row feeds
    if engine.record:
        record_fed(engine, None, step_queries(R)[0])
    cache.set_write(None, index, kv_len)
    fwd = engine._compiled if engine._compiled is not None else engine._model_forward
    try:
        logits = fwd(R.feed_token[:, :1], R.next_pos[:, None], bias[:, None, None, :kv_len], None)
    finally:
        cache.clear_write()
    if engine.record:
        record_logits(engine, None, {"doc": live_long[:, None] - 1, "pos": R.next_pos[:, None]},
                      engine._zeros, logits, False)
    cache.lengths += live_i32
    R.next_pos += live_long
    tok = engine._choose(logits, live)
    R.feed_token[:, 0] = tok  # a row that does not feed next never reads it
    n_emit = engine._emitting
    _host_decide(engine, tok.tolist())
    engine.steps += 1
    return n_emit


def _host_decide(engine, toks: list[int]) -> None:
    """DecodeEngine._decide for plain rows, on the host: each row that fed appends its token and its
    measurements (length L after the step: kept keys L, dependency L + 1, peak), then ends on EOS or
    the budget."""
    lens, host, eos, budget = engine._lengths, engine._host, engine._eos_set, engine.max_new
    done = [False] * engine.B
    for s, x in enumerate(engine._left):
        if x:
            L = lens[s] = lens[s] + 1
            h, t = host[s], toks[s]
            h.tokens.append(t)
            h.trace.append(L)
            h.dependency += L + 1
            h.peak = max(h.peak, L)
            done[s] = t in eos or len(h.tokens) >= budget
    engine.hi = max(lens)
    engine._finished = done
    if any(done):
        r = torch.tensor([s for s, d in enumerate(done) if d], device=engine.device)
        engine.rows.feed_n[r] = 0
        _bias(engine)[r] = torch.finfo(engine.dtype).min
        engine._left = [int(x and not d) for x, d in zip(engine._left, done)]
        _set_live(engine)
    engine._emitting = sum(engine._left)
    engine._block_ends = False


def plain_results(engine, slots: list[int]) -> list[tuple]:
    """(generated, peak KV, dependency, compressions, tokens, kv trace) of retiring plain rows."""
    out = []
    for s in slots:
        h = engine._host.pop(s)
        out.append((len(h.tokens), h.peak, h.dependency, h.compressions, h.tokens, h.trace))
    return out
