"""SepLLM (Chen et al. 2024): initial tokens + separator tokens (punctuation, newlines) + a local
window of recent tokens. When separators overflow the budget the oldest ones go first. After every
step at most budget - 1 keys remain (the next query makes `budget`). A float budget in (0, 1) is a
share of the row's length so far (window: a quarter of it unless given)."""
from __future__ import annotations

import torch

from thinkc.infer.policies.base import CachePolicy, SlotView, check_budget, newest_mask, oldest_mask, row_budget

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

    def __init__(self, separator_token_ids, budget: int | float = 1024, initial: int = 4, window: int | None = 256):
        if isinstance(budget, float):
            self.budget = check_budget(budget, 0, "sepllm")
            self.window = window  # None: a quarter of each row's budget
        else:
            window = 256 if window is None else window
            self.budget = check_budget(budget, initial + window + 1, "sepllm")
            self.window = window
        self.initial = initial
        self.sep_ids = torch.as_tensor(sorted(set(separator_token_ids)), dtype=torch.long)

    def keep(self, slots: SlotView):
        budget = row_budget(self.budget, slots, self.initial + 2)
        window = budget // 4 if self.window is None else torch.clamp(budget - 1 - self.initial, max=self.window)
        base = oldest_mask(slots, self.initial) | newest_mask(slots, window)
        is_sep = torch.isin(slots.token.long(), self.sep_ids.to(slots.token.device)) & slots.valid & ~base
        room = (budget - 1 - base.sum(1, keepdim=True)).clamp(min=0)  # per row: rows differ in length
        # newest separators first: rank separators by position, newest = rank 0
        pos = torch.where(is_sep, slots.pos.long(), torch.full_like(slots.pos.long(), -1))
        rank = pos.argsort(dim=1, descending=True).argsort(dim=1)
        return base | (is_sep & (rank < room))
