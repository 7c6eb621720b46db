"""Device-resident decode state with static shapes (design.md §4): per-slot metadata [B, C] that
mirrors the KV cache layout, and per-row state [B]. Nothing here loops over rows in Python.

Slots: row b's cached keys are slots [0, lengths[b]) of the cache (thinkc.infer.cache); slot j
carries the token, absolute position, Role, segment, doc (0 = a real key, -1 = empty / padding),
`expire` (thinkc.gist.rule) and the accumulated attention score (H2O). A step writes its W query
tokens at [lengths[b], lengths[b] + W); only the first n_real of them are real.

Rows: the next absolute position, current segment (thought) and its length, tokens generated,
compressions, the measurements (peak KV, dependency, per-step kept keys), the generated tokens, and
the tokens the row feeds at the next step (`feed_*`, width of one gist block)."""
from __future__ import annotations

import torch

from thinkc.gist.rule import NEVER, Role

SLOT_FIELDS = ("token", "pos", "role", "seg", "doc", "expire", "score")


class Slots:
    """Per-slot metadata [B, C] (C = cache capacity)."""

    def __init__(self, B: int, C: int, device):
        L = dict(dtype=torch.long, device=device)
        self.token = torch.zeros(B, C, **L)
        self.pos = torch.zeros(B, C, **L)
        self.role = torch.zeros(B, C, **L)
        self.seg = torch.full((B, C), -1, **L)
        self.doc = torch.full((B, C), -1, **L)
        self.expire = torch.full((B, C), NEVER, **L)
        self.score = torch.zeros(B, C, dtype=torch.float32, device=device)

    @property
    def valid(self) -> torch.Tensor:
        return self.doc >= 0

    def clear_rows(self, rows: torch.Tensor) -> None:
        """Empty every slot of `rows` (a refilled slot never sees a former row's keys)."""
        for f, fill in (("token", 0), ("pos", 0), ("role", 0), ("seg", -1), ("doc", -1), ("expire", NEVER),
                        ("score", 0)):
            getattr(self, f)[rows] = fill

    def write(self, rows: torch.Tensor | None, index: torch.Tensor, q: dict) -> None:
        """Write the step's query metadata q[f] [b, W] at slot `index` [b, W] of `rows` (None: all)."""
        for f in ("token", "pos", "role", "seg", "doc", "expire"):
            t = getattr(self, f)
            if rows is None:
                t.scatter_(1, index, q[f])
            else:
                t[rows[:, None], index] = q[f]
        if rows is None:
            self.score.scatter_(1, index, torch.zeros_like(index, dtype=self.score.dtype))
        else:
            self.score[rows[:, None], index] = 0.0

    def view(self, rows: torch.Tensor | None, kv_len: int):
        """SlotView of the first kv_len slots (of `rows`)."""
        from thinkc.infer.policies.base import SlotView

        pick = (lambda t: t[:, :kv_len]) if rows is None else (lambda t: t[rows, :kv_len])
        return SlotView(*(pick(getattr(self, f)) for f in SLOT_FIELDS))

    def compact(self, keep: torch.Tensor) -> None:
        """The metadata side of compact_kv: kept slots slide left in order, the rest become empty.
        `keep` [B, n] covers slots [0, n) (False beyond each row's length); slots past n must be empty."""
        n = keep.shape[1]
        n_keep = keep.sum(1, keepdim=True)
        order = (~keep).to(torch.int8).argsort(dim=1, stable=True)
        live = torch.arange(n, device=keep.device)[None, :] < n_keep
        for f in SLOT_FIELDS:
            t = getattr(self, f)
            t[:, :n] = t[:, :n].gather(1, order)
        self.doc[:, :n].masked_fill_(~live, -1)
        self.expire[:, :n].masked_fill_(~live, NEVER)
        self.score[:, :n].masked_fill_(~live, 0.0)


class Rows:
    """Per-row state [B] plus output buffers [B, max_new]."""

    def __init__(self, B: int, max_new: int, block_width: int, close_len: int, device):
        L = dict(dtype=torch.long, device=device)
        self.next_pos = torch.zeros(B, **L)
        self.seg = torch.zeros(B, **L)
        self.thought_len = torch.zeros(B, **L)
        self.n_gen = torch.zeros(B, **L)
        self.prompt_len = torch.zeros(B, **L)
        self.compressions = torch.zeros(B, **L)
        self.peak = torch.zeros(B, **L)
        self.dependency = torch.zeros(B, **L)
        self.active = torch.zeros(B, dtype=torch.bool, device=device)
        self.closed = torch.zeros(B, dtype=torch.bool, device=device)  # "</think>" seen (token level stops)
        self.recent = torch.full((B, max(close_len, 1)), -1, **L)  # last generated tokens
        self.force = torch.zeros(B, max_new + 1, dtype=torch.bool, device=device)  # forced compressions by n_gen
        self.tokens = torch.zeros(B, max_new, **L)
        self.trace = torch.zeros(B, max_new, **L)  # keys kept after each step
        W = max(block_width, 1)
        self.feed_token = torch.zeros(B, W, **L)
        self.feed_role = torch.zeros(B, W, **L)
        self.feed_n = torch.zeros(B, **L)
        self.feed_ptr = torch.zeros(B, **L)  # next feed column (a gist block streams one token per step)
        self.feed_seg = torch.zeros(B, **L)
        self.feed_expire = torch.full((B, W), NEVER, **L)

    def reset(self, rows: torch.Tensor, prompt_lens: torch.Tensor, force: torch.Tensor | None) -> None:
        for f in ("next_pos", "seg", "thought_len", "n_gen", "compressions", "peak", "dependency", "feed_n",
                  "feed_ptr", "feed_seg"):
            getattr(self, f)[rows] = 0
        self.prompt_len[rows] = prompt_lens
        self.active[rows] = True
        self.closed[rows] = False
        self.recent[rows] = -1
        self.force[rows] = False if force is None else force
        self.feed_role[rows] = int(Role.PAD)
        self.feed_expire[rows] = NEVER
