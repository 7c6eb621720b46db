"""The decode loop: a ragged batch of prompts, one forward per step, per-row stopping, and in-place
KV compaction decided by a cache policy (design.md §4).

Every step, each active row feeds its pending tokens (1 normally; the prompt at step 0; the token
plus its gist block `<w> I C [o]` when a thought ends), right-padded to the longest row. The
attention mask of the step is `thinkc.gist.rule.visible` applied to the new tokens against the
cache slots, by absolute position, from per-slot metadata (token, pos, role, seg, doc, expire)
kept in sync with the cache through every compaction. Padding slots have doc = -1 and are never
visible. Positions are never re-indexed: each token takes the next absolute position of its row.

After the forward: keys whose `expire` is <= the row's next position are dropped (the thought a
gist block just summarised), plus whatever the policy evicts; kept slots slide left in order in
every layer with one compact_kv call (thinkc.infer.cache.StaticGistCache: preallocated, ragged
per-row lengths). A finished row releases all its keys and feeds padding until the batch is done.
The slot metadata has the cache's layout: row b's keys are slots [0, lengths[b]); a forward
writes the row's q tokens at [lengths[b], lengths[b] + q), of which the first n_new are real.

Measurements per sample: peak KV (largest number of cached keys right after a forward, so the
transient gist block counts), kv_trace (keys kept after each step), dependency (for each
generated token, the keys visible to the query that produced it plus itself: LP*LO + LO(LO+1)/2
for vanilla; fed gist tokens <w>/I/C/[o] add the keys they attend to), compressions.
Rolling positions (re-indexing kept keys) are not implemented: positions always continue.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from thinkc.gist.rule import COMPRESSIBLE, NEVER, Role, additive_mask, visible
from thinkc.infer.cache import StaticGistCache
from thinkc.infer.policies.base import CachePolicy, RowState, SlotView
from thinkc.infer.sampling import SamplingConfig, choose_tokens, make_generator
from thinkc.ops.compact import ranges_from_keep_mask

ForceFn = Callable[[int, int], bool]  # (sample index, tokens generated so far) -> force a compression now


@dataclass
class DecodeResult:
    """One sample's output. `aug_*` is the augmented sequence as fed (prompt, generated tokens,
    gist blocks), position i = absolute position i. `logits` (when recorded) pairs each generated
    token with the augmented index of the query that produced it and that query's logits."""

    index: int
    tokens: list[int] = field(default_factory=list)
    aug_ids: list[int] = field(default_factory=list)
    aug_roles: list[int] = field(default_factory=list)
    aug_segs: list[int] = field(default_factory=list)
    logits: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    wall_s: float = 0.0
    peak_kv: int = 0
    dependency: int = 0
    compressions: int = 0
    kv_trace: list[int] = field(default_factory=list)
    stopped_by_eos: bool = False

    def metrics(self) -> dict:
        return {"wall_s": round(self.wall_s, 4), "generated_tokens": len(self.tokens), "peak_kv": self.peak_kv,
                "dependency": self.dependency, "compressions": self.compressions, "kv_trace": self.kv_trace}


_SLOT_FIELDS = ("token", "pos", "role", "seg", "doc", "expire", "score")


class _Slots:
    """Per-slot metadata [B, K] mirroring the cache layout."""

    def __init__(self, B: int, device):
        z = lambda dt: torch.zeros(B, 0, dtype=dt, device=device)  # noqa: E731
        self.token, self.pos, self.role, self.seg, self.doc, self.expire = (z(torch.long) for _ in range(6))
        self.score = z(torch.float32)

    def view(self) -> SlotView:
        return SlotView(*(getattr(self, f) for f in _SLOT_FIELDS))

    def append(self, **new):
        for f in _SLOT_FIELDS:
            setattr(self, f, torch.cat([getattr(self, f), new[f]], dim=1))

    def apply(self, fn):
        for f in _SLOT_FIELDS:
            setattr(self, f, fn(getattr(self, f)))


def _as_force_fn(force) -> ForceFn | None:
    if force is None or callable(force):
        return force
    table = {int(k): set(v) for k, v in dict(force).items()}
    return lambda idx, n: n in table.get(idx, ())


def _compact_meta(slots: _Slots, keep: torch.Tensor) -> None:
    """The metadata side of compact_kv: kept slots slide left in order, the rest become padding."""
    n_keep = keep.sum(1)
    width = max(int(n_keep.max()), 1)
    order = (~keep).to(torch.int8).argsort(dim=1, stable=True)[:, :width]  # kept slots first, in order
    live = torch.arange(width, device=keep.device)[None, :] < n_keep[:, None]
    slots.apply(lambda t: t.gather(1, order))
    slots.doc = torch.where(live, slots.doc, torch.full_like(slots.doc, -1))
    slots.expire = torch.where(live, slots.expire, torch.full_like(slots.expire, NEVER))


def _key_meta(slots: _Slots, q: dict, lengths: torch.Tensor, Q: int) -> dict:
    """Metadata [B, kv_len] of the keys a forward sees: cached slots, then each row's q tokens at
    [len_b, len_b + Q), padding elsewhere (kv_len = max len + Q, as StaticGistCache.update)."""
    B = lengths.shape[0]
    kv_len = int(lengths.max()) + Q
    out = {}
    for f in _SLOT_FIELDS:
        old = getattr(slots, f)
        fill = {"doc": -1, "expire": NEVER}.get(f, 0)
        t = torch.full((B, kv_len), fill, dtype=old.dtype, device=old.device)
        w = min(old.shape[1], kv_len)
        t[:, :w] = old[:, :w]
        new = q[f] if f != "score" else torch.zeros(B, Q, dtype=old.dtype, device=old.device)
        t.scatter_(1, lengths.long()[:, None] + torch.arange(Q, device=old.device)[None, :], new.to(old.dtype))
        out[f] = t
    return out


@torch.no_grad()
def decode(
    model,
    prompts: list[list[int]],
    policy: CachePolicy,
    *,
    max_new_tokens: int = 256,
    eos_ids=(),
    sampling: SamplingConfig = SamplingConfig(),
    force_compress: ForceFn | dict | None = None,
    record_logits: bool = False,
    pad_id: int = 0,
    sample_indices: list[int] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> list[DecodeResult]:
    """Decode every prompt (token id lists, ragged) to at most `max_new_tokens` tokens or an EOS id.
    `force_compress` forces a gist compression after a given generated token: a function
    (sample index, n generated) -> bool or a dict {sample index: {n, ...}}. `sample_indices` name
    the samples (for per-sample generators; default 0..N-1). `on_step(n_new_tokens)` is called
    after every step (progress bars). Returns one DecodeResult per prompt, in order."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("decode needs non-empty prompts")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    force = _as_force_fn(force_compress)
    eos = set(int(e) for e in eos_ids)
    indices = list(sample_indices) if sample_indices is not None else list(range(len(prompts)))
    gist_spec = getattr(policy, "spec", None)
    trigger = gist_spec.trigger_id if gist_spec is not None and gist_spec.level == "thought" else None

    results = [DecodeResult(index=i) for i in indices]
    states = [RowState(index=i) for i in indices]
    gens = [make_generator(sampling, i) for i in indices]
    next_pos = [0] * len(prompts)
    # pending[r]: (token, role, seg, counts_as_gist_query) fed at the next step
    pending = [[(int(t), Role.PROMPT, -1, False) for t in p] for p in prompts]
    N = len(prompts)
    done = [False] * N
    # room for the prompt and every generated token; gist blocks are freed as they come (grow if not)
    cache = StaticGistCache.for_model(model, N, max(map(len, prompts)) + max_new_tokens + 16, grow=True)
    slots = _Slots(N, device)

    restore_attn = None
    if policy.needs_attention and model.config._attn_implementation != "eager":
        restore_attn = model.config._attn_implementation
        model.set_attn_implementation("eager")  # attention weights for scoring policies
    t0 = time.perf_counter()
    try:
        while not all(done):
            Q = max(len(pending[r]) for r in range(N))
            q = {k: torch.zeros(N, Q, dtype=torch.long) for k in ("token", "pos", "role", "seg", "expire")}
            q["token"].fill_(pad_id)
            q["doc"] = torch.full((N, Q), -1, dtype=torch.long)
            q["expire"].fill_(NEVER)
            gist_q = torch.zeros(N, Q, dtype=torch.bool)
            closes = []  # (row, seg, expire value, [o] position or None)
            for r in range(N):
                toks = pending[r]
                n = len(toks)
                if n == 0:
                    continue
                q["token"][r, :n] = torch.tensor([t[0] for t in toks])
                q["pos"][r, :n] = torch.arange(next_pos[r], next_pos[r] + n)
                q["role"][r, :n] = torch.tensor([int(t[1]) for t in toks])
                q["seg"][r, :n] = torch.tensor([t[2] for t in toks])
                q["doc"][r, :n] = 0
                gist_q[r, :n] = torch.tensor([t[3] for t in toks])
                roles = [t[1] for t in toks]
                if Role.CACHE in roles:  # a gist block closes segment `seg` in this step
                    seg = toks[-1][2]
                    o_pos = next_pos[r] + roles.index(Role.OUTPUT) if Role.OUTPUT in roles else None
                    exp = o_pos if o_pos is not None else next_pos[r] + max(i for i, x in enumerate(roles) if x == Role.CACHE) + 1
                    for i, t in enumerate(toks):
                        if t[1] in COMPRESSIBLE:
                            q["expire"][r, i] = exp
                    closes.append((r, seg, exp, o_pos))
            q = {k: v.to(device) for k, v in q.items()}
            for r, seg, exp, o_pos in closes:  # the thought's cached keys expire at [o] (rule: compute_expire)
                compressible = (slots.role[r] == Role.THOUGHT) | (slots.role[r] == Role.TRIGGER) | (slots.role[r] == Role.INSTR)
                hit = (slots.doc[r] >= 0) & (slots.seg[r] == seg) & compressible
                slots.expire[r] = torch.where(hit, torch.full_like(slots.expire[r], exp), slots.expire[r])
                if policy.exclude_continue and o_pos is not None:  # the previous [o] stops at this [o]
                    prev_o = (slots.doc[r] >= 0) & (slots.role[r] == Role.OUTPUT) & (slots.expire[r] == NEVER)
                    slots.expire[r] = torch.where(prev_o, torch.full_like(slots.expire[r], o_pos), slots.expire[r])

            n_real = torch.tensor([len(pending[r]) for r in range(N)], device=device)
            k = _key_meta(slots, q, cache.lengths.to(device), Q)  # the layout update() will write
            vis = visible(q["pos"], q["role"], q["seg"], q["doc"], k["pos"], k["role"], k["seg"], k["doc"],
                          k["expire"], policy.flags)
            cache.begin_step(n_real)
            with warnings.catch_warnings():  # past_key_values -> cache rename (transformers 5.24); 5.17 needs the old name
                warnings.simplefilter("ignore", FutureWarning)
                out = model.model(input_ids=q["token"], position_ids=q["pos"], attention_mask=additive_mask(vis, dtype)[:, None],
                                  past_key_values=cache, use_cache=True, output_attentions=policy.needs_attention)
            for f in _SLOT_FIELDS:
                setattr(slots, f, k[f])
            if policy.needs_attention:
                real_q = (q["doc"] >= 0).float()
                for att in out.attentions:  # [B, H, Q, kv_len]
                    slots.score += torch.einsum("bhqk,bq->bk", att.float(), real_q)

            last = (n_real - 1).clamp(min=0)
            hidden = out.last_hidden_state[torch.arange(N, device=device), last]
            logits = model.get_output_embeddings()(hidden).float()
            counts = vis.sum(-1).cpu()
            valid_now = (slots.doc >= 0).sum(1).cpu()
            live = [r for r in range(N) if pending[r]]
            tokens = dict(zip(live, choose_tokens(logits[live], sampling, [gens[r] for r in live])))

            for r in live:
                res, st, toks = results[r], states[r], pending[r]
                n = len(toks)
                res.aug_ids += [t[0] for t in toks]
                res.aug_roles += [int(t[1]) for t in toks]
                res.aug_segs += [t[2] for t in toks]
                if record_logits:
                    res.logits.append((next_pos[r] + n - 1, logits[r].cpu().clone()))
                res.dependency += int(counts[r, n - 1]) + 1 + int(counts[r, :n][gist_q[r, :n]].sum())
                res.peak_kv = max(res.peak_kv, int(valid_now[r]))
                next_pos[r] += n
                t = tokens[r]
                st.generated.append(t)
                res.tokens.append(t)
                st.thought_len += 1
                if t in eos or len(st.generated) >= max_new_tokens:
                    res.stopped_by_eos = t in eos
                    res.wall_s = time.perf_counter() - t0
                    done[r] = True
                    pending[r] = []
                    continue
                role = Role.TRIGGER if trigger is not None and t == trigger else Role.THOUGHT
                block = policy.block_after(st, t, bool(force and force(st.index, len(st.generated))))
                pending[r] = [(t, role, st.seg, False)]
                if block:
                    pending[r] += [(tok, rl, st.seg, True) for tok, rl in block]
                    st.seg += 1
                    st.thought_len = 0
                    st.compressions += 1
                    res.compressions += 1
            if on_step:
                on_step(len(live))

            # drop expired keys (the rule's expire) and what the policy evicts; finished rows drop all
            nxt = torch.tensor(next_pos, device=device)
            keep = (slots.doc >= 0) & (slots.expire > nxt[:, None])
            extra = policy.keep(slots.view())
            if extra is not None:
                keep &= extra
            kept = keep.sum(1).cpu()  # the trace shows a finished row's last cache, not the release
            keep &= torch.tensor([not d for d in done], device=device)[:, None]
            if bool(((slots.doc >= 0) & ~keep).any()):
                lengths = cache.lengths.to(device)
                w = keep.shape[1]
                full = torch.zeros(N, cache.capacity, dtype=torch.bool, device=device)
                full[:, :w] = keep
                cache.compact(*ranges_from_keep_mask(full, lengths))
                _compact_meta(slots, keep)
            for r in live:
                results[r].kv_trace.append(int(kept[r]))
    finally:
        if restore_attn is not None:
            model.set_attn_implementation(restore_attn)
    return results
