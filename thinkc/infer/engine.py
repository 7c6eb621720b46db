"""The decode engine: a fixed set of slots on the device, a host scheduler around it (design.md §4).

    engine = DecodeEngine(model, policy, slots=8, max_prompt=..., max_new_tokens=...)
    results = engine.run(prompts)           # continuous batching: a queue feeds the slots

The device side (thinkc.infer.step, thinkc.infer.state) is tensor work with static shapes: per-slot
metadata [slots, capacity], per-row state [slots], one forward per step of width 1 (or one gist block
when a row compresses), decisions as tensor ops. The host side admits prompts into free slots
(prefill of the newcomers alone, chunked), reads one small tensor per step (finished rows, the next
step's width, row lengths), and retires finished rows, whose slot is refilled at once. A refilled
slot starts from empty metadata, so it never sees a former row's keys.

With `kv_budget` the cache is a page pool for all rows (thinkc.infer.pool): thinkc.infer.scheduler
admits rows by free pages, takes pages before each step, returns them after compaction and swaps the
youngest row to the host when the pool runs dry; thinkc.infer.buckets sizes the slots to the rows in
flight; thinkc.infer.attention reads the pages in place. Without it every slot reserves its full length.

Greedy results equal decoding each prompt alone (and under any budget). Measurements live on the device (peak KV,
dependency, kept keys per step, compressions) and are read when a row retires; `wall_s` is the
sample's own latency from admission to finish.
"""
from __future__ import annotations

import inspect
import time
from collections import deque
from contextlib import nullcontext
from typing import Callable

import torch

from thinkc.gist.rule import NEVER, Role
from thinkc.infer.cache import StaticGistCache
from thinkc.infer.gistpath import gist_admitted, gist_step, is_gist_fast
from thinkc.infer.attention import compile_step, pool_attention
from thinkc.infer.measure import EngineMeter
from thinkc.infer.plain import is_plain, plain_admitted, plain_results, plain_step
from thinkc.infer.pool import PagedKVCache
from thinkc.infer.result import DecodeResult, force_table
from thinkc.infer.sampling import SamplingConfig, choose_tokens, make_generator
from thinkc.infer.scheduler import Scheduler
from thinkc.infer.state import Rows, Slots
from thinkc.infer.recording import grow, record_fed, record_logits
from thinkc.infer.step import GistTemplates, next_feed, additive, block_rest, gist_decisions, step_mask, step_queries
from thinkc.ops.compact import ranges_from_keep_mask


class DecodeEngine:
    def __init__(self, model, policy, *, slots: int, max_prompt: int, max_new_tokens: int, eos_ids=(),
                 sampling: SamplingConfig = SamplingConfig(), prefill_chunk: int = 512, record: bool = False,
                 compile: bool | str = False, kv_bucket: int = 256, plain: bool = True,
                 kv_budget: int | None = None, page_size: int = 16, attention: str | None = None,
                 pack_blocks: bool = False):
        self.model, self.policy, self.B = model, policy, int(slots)
        self.max_slots = self.B  # with a pool, B follows the rows in flight (thinkc.infer.buckets)
        self.base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        self.head = model.get_output_embeddings()
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.max_new, self.sampling, self.chunk, self.record = int(max_new_tokens), sampling, int(prefill_chunk), record
        self.spec = getattr(policy, "spec", None)
        self.tpl = GistTemplates.build(self.spec, self.device) if self.spec is not None else None
        self.Wb = self.tpl.width if self.tpl else 1
        # a gist block streams in one token per step (every step has the same shape) unless its cache
        # tokens see each other (bi_directional) or `pack_blocks` asks: then the rest of a block goes in
        # one extra forward of the rows that feed one (its ids are known once the thought ends)
        self.stream_blocks = not pack_blocks and (self.spec is None or not self.spec.flags.bi_directional)
        self.eos = torch.tensor(sorted({int(e) for e in eos_ids}) or [-1], device=self.device)
        close = len(self.spec.close_ids) if self.spec is not None else 0
        cap = int(max_prompt) + self.max_new + self.Wb + 1
        if kv_budget is None:  # every row at full capacity
            self.cache, self.sched = StaticGistCache.for_model(model, self.B, cap), None
        else:  # a page pool of kv_budget tokens for all rows (thinkc.infer.pool, thinkc.infer.scheduler)
            if policy.needs_attention:  # H2O's scores come from the eager score sink over gathered keys
                attention = "gather"
            self.cache = PagedKVCache.for_model(model, self.B, cap, int(kv_budget), int(page_size),
                                                attention=attention)
            self.sched = Scheduler(self)
        self.slots = Slots(self.B, cap, self.device)
        self.rows = Rows(self.B, self.max_new, self.Wb, close, self.device)
        self.cache_kw = "cache" if "cache" in inspect.signature(self.base.forward).parameters else "past_key_values"
        from thinkc.infer.policies.base import CachePolicy

        self.budgeted = getattr(type(policy), "keep", CachePolicy.keep) is not CachePolicy.keep  # evicts by itself
        self._finished = [False] * self.B
        self.owner: list[int | None] = [None] * self.B  # sample index held by each slot
        self.hi = 0  # host upper bound of the longest row
        self._block_ends = False  # a row feeds the last token of a gist block at the next step
        self._emitting = 0
        self.sink = None
        self.steps = 0
        self.forwards = 0  # model forwards (prefill chunks, decode steps, gist-block rests)
        self.meter = EngineMeter()
        self._left = [0] * self.B
        self.kv_bucket = int(kv_bucket)
        # host-driven fast paths, chosen per run: vanilla (thinkc.infer.plain), LightThinker (thinkc.infer.gistpath)
        self.allow_plain, self.plain, self.gistfast = plain, False, False
        self.may_sync = plain and self.device.type == "cpu"  # a host read mid-step costs nothing on CPU
        self._zeros = torch.zeros(self.B, dtype=torch.long, device=self.device)
        self._host, self._lengths, self._eos_set = {}, [0] * self.B, set(self.eos.tolist())  # plain path: host side
        self._compiled = compile_step(self, None if compile is True else compile) if compile else None

    def step_kv_len(self) -> int:
        """The keys a width-1 step attends (logical slots [0, kv_len)): the longest row plus its new key;
        compiled, the next multiple of kv_bucket (static shapes per bucket), or with the pool read in
        place by FlexAttention the whole row capacity (one shape for every length: the BlockMask skips
        pages no row holds)."""
        kv_len = self.hi + 1
        if self._compiled is not None:
            if self.sched is not None and self.cache.attention == "flex":
                kv_len = max(kv_len, self.cache.capacity)
            else:
                kv_len = -(-kv_len // self.kv_bucket) * self.kv_bucket
        self._ensure(kv_len)
        return kv_len

    def _ensure(self, need: int) -> None:
        """Grow the cache and slot metadata when a row would outgrow the capacity (rare: gist blocks)."""
        if need > self.cache.capacity:
            grow(self, need)

    def _model_forward(self, tokens, pos, mask, last):
        out = self.base(input_ids=tokens, position_ids=pos, attention_mask=mask, use_cache=True,
                        **{self.cache_kw: self.cache})
        if last is None:  # a width-1 step
            return self.head(out.last_hidden_state[:, 0]).float()
        b = torch.arange(last.shape[0], device=last.device)
        return self.head(out.last_hidden_state[b, last]).float()

    # ---- host scheduler ----------------------------------------------------------------------
    def run(self, prompts: list[list[int]], indices: list[int] | None = None, force=None,
            on_step: Callable[[int], None] | None = None,
            on_result: Callable[[DecodeResult], None] | None = None, prompt_meta=None) -> list[DecodeResult]:
        """Decode every prompt; results in input order. `force`: forced compressions (see force_table).
        `prompt_meta`: per prompt None or the GistMeta of a compressed prompt (aug / recover layouts:
        sentences with their cache blocks, thinkc.gist.layout.build_prompt_sample); its roles,
        segments and expiry are fed as they are, so the prompt is attended as in training."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("decode needs non-empty prompts")
        indices = list(range(len(prompts))) if indices is None else list(indices)
        self._prompts, self._indices, self._force = prompts, indices, force
        self._pmeta = list(prompt_meta) if prompt_meta is not None else [None] * len(prompts)
        if self.sched is not None:
            self.sched.check_prompts(prompts)
        self.plain = self.allow_plain and is_plain(self, self._pmeta)
        self.gistfast = self.allow_plain and not self.plain and is_gist_fast(self, self._pmeta)
        self._out: dict[int, DecodeResult] = {}
        self._meta: dict[int, dict] = {}
        queue = self._queue = deque(range(len(prompts)))
        from thinkc.infer.scores import scored_attention

        ctx = scored_attention(self.model) if self.policy.needs_attention else nullcontext()
        with ctx as sink, pool_attention(self):
            self.sink = sink
            t0 = time.perf_counter()
            while queue or self._waiting() or any(o is not None for o in self.owner):
                if not self._schedule(queue):
                    n = self._decode_step()
                    self.meter.step(self, t0)
                    if on_step:
                        on_step(n)
                self._retire(on_result)
        self.sink = None
        return [self._out[i] for i in range(len(prompts))]

    def summary(self) -> dict:
        """The run's engine measurements (thinkc infer's summary.json; thinkc.infer.measure)."""
        return self.meter.summary(self)

    def _waiting(self) -> bool:
        return self.sched is not None and bool(self.sched.swapped)

    def _schedule(self, queue: deque) -> bool:
        """Fill free slots: preempted rows first (oldest first), then newcomers, as far as the pool
        admits them. False when nothing was admitted (the caller runs a decode step)."""
        if self.sched is None:
            free = [s for s in range(self.B) if self.owner[s] is None]
            if not queue or not free:
                return False
            take = [queue.popleft() for _ in range(min(len(free), len(queue)))]
            self._admit(free[:len(take)], take)
            return True
        return self.sched.schedule(queue, self._prompts)

    def _admit(self, slots: list[int], items: list[int]) -> None:
        """Prefill newcomers into free slots (alone, chunked) and decide their first token."""
        dev = self.device
        r = torch.tensor(slots, device=dev)
        prompts = [self._prompts[i] for i in items]
        lens = torch.tensor([len(p) for p in prompts], device=dev)
        force = torch.stack([force_table(self._force, self._indices[i], self.max_new) for i in items]).to(dev)
        self.slots.clear_rows(r)
        self.cache.lengths[r] = 0
        self.rows.reset(r, lens, force)
        now = time.perf_counter()
        for s, i in zip(slots, items):
            self.owner[s] = i
            self._meta[s] = {"t0": now, "gen": make_generator(self.sampling, self._indices[i]), "aug": [],
                             "logits": []}
        metas = [self._pmeta[i] for i in items]
        logits = self._prefill(r, prompts, metas)
        self.rows.seg[r] = torch.tensor([int(m.seg.max()) + 1 if m is not None else 0 for m in metas], device=dev)
        self.rows.next_pos[r] = lens
        self.rows.peak[r] = lens
        live = torch.zeros(self.B, dtype=torch.bool, device=dev)
        live[r] = True
        full = torch.zeros(self.B, logits.shape[-1], dtype=logits.dtype, device=dev)
        full[r] = logits
        if self.record:
            for s, L in zip(slots, lens.tolist()):
                self._meta[s]["logits"].append((L - 1, full[s].cpu().clone()))
        vis_count = torch.zeros(self.B, dtype=torch.long, device=dev)
        vis_count[r] = lens
        self._decide(live, self._choose(full, live), vis_count,
                     compact=self.budgeted or any(m is not None for m in metas))
        if self.plain:
            plain_admitted(self, slots)
        elif self.gistfast:
            gist_admitted(self, slots)

    def _retire(self, on_result) -> None:
        done = [s for s in range(self.B) if self.owner[s] is not None and self._finished[s]]
        if not done:
            return
        now = time.perf_counter()
        for s, (n, peak, dep, comp, tokens, trace) in zip(done, self._row_results(done)):
            i, m = self.owner[s], self._meta.pop(s)
            res = DecodeResult(index=self._indices[i], tokens=tokens, wall_s=now - m["t0"], peak_kv=peak,
                               dependency=dep, compressions=comp, kv_trace=trace, prompt_len=len(self._prompts[i]))
            res.stopped_by_eos = bool(n) and res.tokens[-1] in self._eos_set
            if self.record:
                res.aug_ids, res.aug_roles, res.aug_segs = (list(x) for x in zip(*m["aug"])) if m["aug"] else ([], [], [])
                res.logits = m["logits"]
            self._out[i] = res
            self.owner[s] = None
            if self.sched is not None:
                self.sched.retired(s)
            if on_result:
                on_result(res)
        if self.sched is not None:
            self.sched.rows_left()

    def _row_results(self, done: list[int]) -> list[tuple]:
        """(generated, peak KV, dependency, compressions, tokens, kv trace) of the retiring rows."""
        if self.plain or self.gistfast:
            return plain_results(self, done)
        R, r = self.rows, torch.tensor(done, device=self.device)
        n_gen, peak, dep, comp = (t[r].cpu().tolist() for t in (R.n_gen, R.peak, R.dependency, R.compressions))
        tokens, trace = R.tokens[r].cpu(), R.trace[r].cpu()
        return [(n, p, d, c, tokens[j, :n].tolist(), trace[j, :n].tolist())
                for j, (n, p, d, c) in enumerate(zip(n_gen, peak, dep, comp))]

    # ---- device steps ------------------------------------------------------------------------
    def _prefill(self, r: torch.Tensor, prompts: list[list[int]], metas: list) -> torch.Tensor:
        """Prompt forwards of rows `r` only, in chunks; logits [n, V] at each row's last prompt token."""
        dev, n = self.device, len(prompts)
        longest = max(map(len, prompts))
        ids = torch.zeros(n, longest, dtype=torch.long)
        role = torch.full((n, longest), int(Role.PROMPT), dtype=torch.long)
        seg = torch.full((n, longest), -1, dtype=torch.long)
        expire = torch.full((n, longest), NEVER, dtype=torch.long)
        for j, (p, m) in enumerate(zip(prompts, metas)):
            ids[j, :len(p)] = torch.tensor(p)
            if m is not None:
                role[j, :len(p)], seg[j, :len(p)], expire[j, :len(p)] = m.role.long(), m.seg.long(), m.expire.long()
        ids, lens = ids.to(dev), torch.tensor([len(p) for p in prompts], device=dev)
        role, seg, expire = role.to(dev), seg.to(dev), expire.to(dev)
        out = None
        for c0 in range(0, longest, self.chunk):
            W = min(self.chunk, longest - c0)
            self._ensure(c0 + W)
            ar = torch.arange(W, device=dev)[None, :]
            n_real = (lens - c0).clamp(0, W)
            real = ar < n_real[:, None]
            index = self.cache.lengths[r].long()[:, None] + ar
            q = {"token": ids[:, c0:c0 + W], "pos": index, "role": torch.where(real, role[:, c0:c0 + W], 0),
                 "seg": seg[:, c0:c0 + W], "doc": torch.where(real, 0, -1),
                 "expire": torch.where(real, expire[:, c0:c0 + W], NEVER)}
            last = (n_real - 1).clamp(min=0)
            logits = self._forward(r, q, index, c0 + W, last, prefill=True)
            self.cache.lengths[r] += n_real.to(torch.int32)
            ends_here = (lens > c0) & (lens <= c0 + W)
            out = logits if out is None else torch.where(ends_here[:, None], logits, out)
        self.hi = max(self.hi, longest)
        return out

    def _decode_step(self) -> int:
        """One step of every slot, always one token per row (so one captured graph serves every step):
        a row feeds its generated token, or the next token of the gist block it is feeding. A row emits
        a new token when its feed is done: after a plain token, or after the block's [o]. Returns the
        rows that emitted."""
        if self.sched is not None:
            self.sched.reserve()
        if self.plain or self.gistfast:
            self.forwards += 1
            return plain_step(self) if self.plain else gist_step(self)
        R = self.rows
        kv_len = self.step_kv_len()
        q, live = step_queries(R)
        index = self.cache.lengths.long()[:, None]
        logits, vis_last = self._forward(None, q, index, kv_len, None, want_vis=True)  # width 1: last = 0
        self.cache.lengths += live.to(torch.int32)
        self.hi += 1
        R.peak = torch.where(live, torch.maximum(R.peak, self.cache.lengths.long()), R.peak)
        R.next_pos += live
        R.feed_ptr += live
        whole_blocks = not self.stream_blocks and any(x > 1 for x in self._left)
        if whole_blocks:
            logits, vis_last = block_rest(self, logits, vis_last)
        emit = live & (R.feed_ptr >= R.feed_n)
        n_emit = self._emitting
        self._decide(emit, self._choose(logits, emit), vis_last,
                     compact=self.budgeted or self._block_ends or whole_blocks)
        self.steps += 1
        return n_emit

    def _forward(self, r, q: dict, index, kv_len: int, last, want_vis: bool = False, prefill: bool = False,
                 rest: bool = False):
        """Write q's metadata, build the rule's mask, run the model on the cache; logits at `last`
        (None: a width-1 step)."""
        self.forwards += 1
        self.slots.write(r, index, q)
        vis = step_mask(self.slots, q, r, kv_len, self.policy.flags)
        if self.record:
            record_fed(self, r, q)
        if self.sink is not None:
            self.sink.start((q["doc"] >= 0).float(), q["pos"])
        self.cache.set_write(r, index, kv_len)
        fwd = self._compiled if (self._compiled is not None and r is None) else self._model_forward
        try:
            logits = fwd(q["token"], q["pos"], additive(vis, self.dtype), last)
        finally:
            self.cache.clear_write()
        if self.sink is not None:
            if r is None:
                self.slots.score[:, :kv_len] += self.sink.acc
            else:
                self.slots.score[r, :kv_len] += self.sink.acc
        if self.record and not prefill:
            record_logits(self, r, q, self._zeros if last is None else last, logits, rest)
        if want_vis:
            if last is None:
                return logits, vis[:, 0].sum(-1)
            return logits, vis[torch.arange(last.shape[0], device=self.device), last].sum(-1)
        return logits

    def _choose(self, logits: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
        if self.sampling.greedy:
            return logits.argmax(-1)
        rows = [s for s in range(self.B) if bool(live[s])]
        toks = choose_tokens(logits[rows], self.sampling, [self._meta[s]["gen"] for s in rows])
        out = torch.zeros(self.B, dtype=torch.long)
        out[rows] = torch.tensor(toks, dtype=torch.long)
        return out.to(self.device)

    def _decide(self, live, tok, vis_count, compact: bool) -> None:
        """EOS / budget / compression decisions for the rows that produced a token, the measurements,
        the next feed, and (when keys may go) the compaction. Ends with the step's one host read."""
        R, S = self.rows, self.slots
        tok = torch.where(live, tok, 0)
        R.n_gen += live
        at = (R.n_gen - 1).clamp(min=0)[:, None]
        R.tokens.scatter_(1, at, torch.where(live[:, None], tok[:, None], R.tokens.gather(1, at)))
        if self.tpl is not None and self.spec.level == "token":  # read by token-level gist decisions only
            R.recent = torch.where(live[:, None], torch.cat([R.recent[:, 1:], tok[:, None]], 1), R.recent)
        finished = live & (torch.isin(tok, self.eos) | (R.n_gen >= self.max_new))
        R.thought_len += live
        if self.tpl is not None:  # the original's dependency: prompt + current thought + (n+1) x compressions
            dep = R.prompt_len + R.thought_len + self.tpl.kept * R.compressions
        else:  # keys the producing query saw, plus the token itself
            dep = vis_count + 1
        R.dependency += torch.where(live, dep, 0)
        next_feed(self, live, finished, tok)
        R.active &= ~finished
        hi = self.hi  # no row holds a key at or past hi: the rest of the slots is empty
        keep = S.valid[:, :hi] & (S.expire[:, :hi] > R.next_pos[:, None])
        if self.budgeted:
            extra = self.policy.keep(S.view(None, hi))
            if extra is not None:
                keep &= extra
        kept = keep.sum(1)
        R.trace.scatter_(1, at, torch.where(live[:, None], kept[:, None], R.trace.gather(1, at)))
        if compact:
            self._compact(torch.where((live & ~finished)[:, None], keep, S.valid[:, :hi]))
        self._sync(finished)

    def _compact(self, keep: torch.Tensor) -> None:
        S = self.slots
        if not bool((S.valid[:, :keep.shape[1]] & ~keep).any()):
            return
        ranges, offsets = ranges_from_keep_mask(keep, self.cache.lengths)
        self.cache.compact(ranges, offsets, check=False)
        S.compact(keep)

    def _sync(self, finished: torch.Tensor) -> None:
        """The step's one device-to-host read: finished rows, next feed widths, row lengths."""
        R = self.rows
        left = R.feed_n - R.feed_ptr  # tokens each row still has to feed
        block = (R.feed_n > 1) | (R.feed_role[:, 0] == int(Role.CACHE))  # a gist block (AnLLM: the anchor alone)
        info = torch.stack([finished.long(), left, block.long(), self.cache.lengths.long()]).cpu()
        self._finished = info[0].bool().tolist()
        self._left, is_block = info[1].tolist(), info[2].tolist()
        self._lengths = info[3].tolist()
        self.hi = max(self._lengths)
        self._emitting = sum(1 for x in self._left if x == 1)  # rows that emit a token at the next step
        self._block_ends = any(x == 1 and b for x, b in zip(self._left, is_block))  # a block's last token comes next
