"""H2O (Zhang et al. 2023): keep the heavy hitters (keys with the largest accumulated attention)
plus a recent window, under a total budget.

Attention weights come from the eager attention path (the loop asks the model for them when
`needs_attention` is set), summed over layers, heads and the step's real queries: one keep set per
row shared by all layers, so compaction stays a single op. After every step the cache holds at most
budget - 1 keys, so the next query attends to at most `budget` (itself included). A prompt longer
than the budget is prefilled in full, then trimmed. A float budget in (0, 1) is a share of the
row's length so far (the H2O paper's heavy-hitter ratio), so it bites on short and long traces alike."""
from __future__ import annotations

import torch

from thinkc.infer.policies.base import CachePolicy, SlotView, check_budget, newest_mask, row_budget, top_score_mask


class H2OPolicy(CachePolicy):
    name = "h2o"
    needs_attention = True

    def __init__(self, budget: int | float = 1024, window: int | None = None):
        self.budget = check_budget(budget, 2, "h2o")
        if isinstance(self.budget, int):
            window = self.budget // 2 if window is None else min(window, self.budget - 1)  # paper: half recent
        self.window = window  # None with a ratio budget: half of each row's budget

    def keep(self, slots: SlotView):
        cap = row_budget(self.budget, slots, 2) - 1
        window = cap // 2 if self.window is None else torch.clamp(cap, max=self.window)
        recent = newest_mask(slots, window)
        heavy = top_score_mask(slots, slots.valid & ~recent, cap - window)
        return recent | heavy
