"""StreamingLLM (Xiao et al. 2023): attention sinks (the first keys) plus a sliding window of the
most recent keys. After every step at most budget - 1 keys remain (the next query makes `budget`).
A float budget in (0, 1) is a share of the row's length so far."""
from __future__ import annotations

from thinkc.infer.policies.base import CachePolicy, SlotView, check_budget, newest_mask, oldest_mask, row_budget


class StreamingLLMPolicy(CachePolicy):
    name = "streamingllm"

    def __init__(self, budget: int | float = 1024, sinks: int = 4):
        self.budget, self.sinks = check_budget(budget, sinks + 2, "streamingllm"), sinks

    def keep(self, slots: SlotView):
        sink = oldest_mask(slots, self.sinks)
        return sink | newest_mask(slots, row_budget(self.budget, slots, self.sinks + 2) - 1 - self.sinks)
