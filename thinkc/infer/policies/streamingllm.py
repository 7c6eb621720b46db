"""StreamingLLM (Xiao et al. 2023): attention sinks (the first keys) plus a sliding window of the
most recent keys. After every step at most budget - 1 keys remain (the next query makes `budget`)."""
from __future__ import annotations

from thinkc.infer.policies.base import CachePolicy, SlotView, newest_mask, oldest_mask


class StreamingLLMPolicy(CachePolicy):
    name = "streamingllm"

    def __init__(self, budget: int = 1024, sinks: int = 4):
        if budget < sinks + 2:
            raise ValueError("streamingllm budget must exceed sinks + 1")
        self.budget, self.sinks = budget, sinks

    def keep(self, slots: SlotView):
        sink = oldest_mask(slots, self.sinks)
        return sink | newest_mask(slots, self.budget - 1 - self.sinks)
