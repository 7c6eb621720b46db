"""SepLLM (Chen et al. 2024): initial tokens + separator tokens (punctuation, newlines) + a local
window of recent tokens. When separators overflow the budget the oldest ones go first. After every
step at most budget - 1 keys remain (the next query makes `budget`)."""
from __future__ import annotations

import torch

from thinkc.infer.policies.base import CachePolicy, SlotView, newest_mask, oldest_mask

SEPARATORS = set(".,;:!?") | {"\n"}


def separator_ids(tokenizer) -> list[int]:
    """Ids whose text, stripped of spaces, is only separator characters (or holds a newline)."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])  # one call: ~150k ids on Qwen
    ids = []
    for i, text in enumerate(texts):
        core = text.strip(" ")
        if core and ("\n" in core or set(core) <= SEPARATORS):
            ids.append(i)
    return ids


class SepLLMPolicy(CachePolicy):
    name = "sepllm"

    def __init__(self, separator_token_ids, budget: int = 1024, initial: int = 4, window: int = 256):
        if budget < initial + window + 1:
            raise ValueError("sepllm budget must exceed initial + window")
        self.budget, self.initial, self.window = budget, initial, window
        self.sep_ids = torch.as_tensor(sorted(set(separator_token_ids)), dtype=torch.long)

    def keep(self, slots: SlotView):
        base = oldest_mask(slots, self.initial) | newest_mask(slots, self.window)
        is_sep = torch.isin(slots.token.long(), self.sep_ids.to(slots.token.device)) & slots.valid & ~base
        room = (self.budget - 1 - base.sum(1, keepdim=True)).clamp(min=0)  # per row: rows differ in length
        # newest separators first: rank separators by position, newest = rank 0
        pos = torch.where(is_sep, slots.pos.long(), torch.full_like(slots.pos.long(), -1))
        rank = pos.argsort(dim=1, descending=True).argsort(dim=1)
        return base | (is_sep & (rank < room))
