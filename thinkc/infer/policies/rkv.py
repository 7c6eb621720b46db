"""R-KV (Cai et al. 2025, arXiv 2505.24133; definitions as the authors' code Zefan-Cai/R-KV, which
wins where it and the paper differ): redundancy-aware KV compression for reasoning traces.

  * importance: the attention of the last `window` (8) queries to every cached key, as a share
    (the mean over window queries, heads and layers), max-pooled over key positions with `kernel` 7;
  * redundancy: thinkc.infer.scores.key_redundancy (cosine similarity among the post-RoPE keys,
    the newest near-duplicate of each key not counted, mean per key, softmax over keys), averaged
    over KV heads and layers;
  * score = lam * importance - (1 - lam) * redundancy, lam = 0.07 (the code's `mix_lambda`; the
    issue's "importance - 0.1 * redundancy" ranks differently, so the code's form is used);
  * schedule: at every `buffer` (128) tokens, a row holding at least budget + buffer keys compresses
    to `budget`: the newest `window` keys are always kept (the code protects exactly these, not the
    whole buffer), plus the budget - window others with the highest score. After its first
    compression a row holds at most budget + buffer keys (peak, before the step's compression);
    before it, up to one more interval (the first boundary may come just after the threshold).

Named deviations: one keep set per row for all layers and heads, since the engine evicts the same
slots in every layer and head of a row (scores are averaged over layers and heads; the paper and code
select per layer and KV head, and the code max-pools attention over a GQA group); the window
queries' probabilities are those of their own decode step, over all keys then cached (the code
renormalises over the non-window keys); the clock counts positions (thinkc.infer.policies.windowed).
Redundancy needs the keys: the policy asks the score sink for it one step before each compression
step (`want_keys`), so its K x K cost is paid only then."""
from __future__ import annotations

import torch

from thinkc.infer.policies.base import CachePolicy, SlotView, newest_mask
from thinkc.infer.policies.windowed import check_window, pooled_share, reset_window, row_clock, top_mask, window_ready


class RKVPolicy(CachePolicy):
    name = "rkv"
    needs_attention = True

    def __init__(self, budget: int = 1024, window: int | None = None, buffer: int = 128, kernel: int = 7,
                 lam: float = 0.07):
        window = 8 if window is None else int(window)
        self.budget = check_window(budget, window, int(buffer), "rkv")
        if not 0 <= lam <= 1:
            raise ValueError(f"rkv lambda must be in [0, 1], got {lam}")
        self.window, self.buffer, self.kernel, self.lam = window, int(buffer), int(kernel), float(lam)

    def scores(self, slots: SlotView, redundancy: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """[B, K] the R-KV score of each slot (meaningful on `candidates`)."""
        importance = pooled_share(slots, candidates, self.kernel)
        return self.lam * importance - (1 - self.lam) * redundancy.double()

    def select(self, slots: SlotView, redundancy: torch.Tensor | None) -> torch.Tensor:
        """The keep mask for this step given the key redundancy [B, >= K] (None: none was computed)."""
        clock = row_clock(slots)
        count = slots.valid.sum(1)
        due = window_ready(slots, clock, self.buffer, self.window) & (count >= self.budget + self.buffer)
        keep = slots.valid.clone()
        K = slots.pos.shape[1]
        if redundancy is None or redundancy.shape[0] != slots.pos.shape[0] or redundancy.shape[1] < K:
            # no keys were recorded at this step: a row that reaches its compression step always asked
            # for them one step before (keep, want_keys), so a due row here is a stale one (it finished
            # at its boundary and its slot waits for a newcomer): it keeps its keys, nothing reads them
            due = torch.zeros_like(due)
        if bool(due.any()):
            recent = newest_mask(slots, self.window)
            cand = slots.valid & ~recent
            score = self.scores(slots, redundancy[:, :K], cand)
            chosen = recent | top_mask(score, cand, self.budget - self.window)
            keep = torch.where(due[:, None], chosen, keep)
        reset_window(slots, clock, self.buffer, self.window)
        return keep

    def keep(self, slots: SlotView):
        from thinkc.infer.scores import active_sink

        sink = active_sink()
        red = None
        if sink is not None and sink.redundancy is not None and sink.redundancy.shape[0] == slots.pos.shape[0]:
            red = sink.redundancy / max(sink.layers, 1)
        keep = self.select(slots, red)
        if sink is not None:  # keys are needed at the next forward for the rows reaching a compression step
            clock = row_clock(slots)
            sink.want_keys = bool(((clock > 0) & ((clock + 1) % self.buffer == 0)).any())
            sink.want_every = self.buffer  # the rows whose next query ends an interval (thinkc.infer.scores)
        return keep
