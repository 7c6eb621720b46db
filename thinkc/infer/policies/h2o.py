"""H2O (Zhang et al. 2023): keep the heavy hitters (keys with the largest accumulated attention)
plus a recent window, under a total budget.

Attention weights come from the eager attention path (the loop asks the model for them when
`needs_attention` is set), summed over layers, heads and the step's real queries: one keep set per
row shared by all layers, so compaction stays a single op. After every step the cache holds at most
budget - 1 keys, so the next query attends to at most `budget` (itself included). A prompt longer
than the budget is prefilled in full, then trimmed."""
from __future__ import annotations

from thinkc.infer.policies.base import CachePolicy, SlotView, newest_mask, top_score_mask


class H2OPolicy(CachePolicy):
    name = "h2o"
    needs_attention = True

    def __init__(self, budget: int = 1024, window: int | None = None):
        if budget < 2:
            raise ValueError("h2o budget must be >= 2")
        self.budget = budget
        self.window = budget // 2 if window is None else min(window, budget - 1)  # paper: half recent

    def keep(self, slots: SlotView):
        cap = self.budget - 1
        recent = newest_mask(slots, min(self.window, cap))
        heavy = top_score_mask(slots, slots.valid & ~recent, cap - min(self.window, cap))
        return recent | heavy
