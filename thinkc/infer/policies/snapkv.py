"""Decode-time SnapKV (Li et al. 2024; as kvpress's DecodingPress with a SnapKV scorer): every
`compress_every` tokens, a row holding more than `budget` keys keeps the `budget - window` keys the
last `window` queries attended most (attention summed over the window queries, heads and layers,
then 1-D max-pooled over key positions with `kernel` 7: SnapKV's maxpool option; its code defaults to,
and kvpress uses, average pooling with kernel 5), plus the newest `window`
keys. Between compression steps every key is kept, so after its first compression a row holds at most
budget + compress_every keys (right after a compression exactly `budget`).

Schedule and scores: thinkc.infer.policies.windowed (the window's attention comes from the score
sink beside SDPA; no eager attention). Named choices:
  * one keep set per row for all layers and heads (the engine compacts per row): scores are summed
    over layers and heads, where SnapKV selects per layer and head;
  * each window query's probabilities are those of its own decode step (over the keys cached then),
    not recomputed against the keys at compression time; with compress_every >= window no key is
    evicted inside a window, so this equals SnapKV's causal window attention;
  * the clock counts the row's positions (prompt + generated), see windowed.py."""
from __future__ import annotations

import torch

from thinkc.infer.policies.base import CachePolicy, SlotView, newest_mask
from thinkc.infer.policies.windowed import check_window, pooled_share, reset_window, row_clock, top_mask, window_ready


class SnapKVPolicy(CachePolicy):
    name = "snapkv"
    needs_attention = True

    def __init__(self, budget: int = 1024, window: int | None = None, compress_every: int = 128, kernel: int = 7):
        window = 32 if window is None else int(window)
        self.budget = check_window(budget, window, int(compress_every), "snapkv")
        self.window, self.every, self.kernel = window, int(compress_every), int(kernel)

    def keep(self, slots: SlotView):
        clock = row_clock(slots)
        count = slots.valid.sum(1)
        due = window_ready(slots, clock, self.every, self.window) & (count > self.budget)
        recent = newest_mask(slots, self.window)
        keep = slots.valid.clone()
        if bool(due.any()):
            cand = slots.valid & ~recent
            share = pooled_share(slots, cand, self.kernel)
            chosen = recent | top_mask(share, cand, self.budget - self.window)
            keep = torch.where(due[:, None], chosen, keep)
        reset_window(slots, clock, self.every, self.window)
        return keep
