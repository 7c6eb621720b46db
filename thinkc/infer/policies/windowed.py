"""The schedule shared by decode-time SnapKV and R-KV: an observation window of the last `window`
queries, scored every `interval` tokens, without eager attention and without per-row policy state.

The engine's score sink (thinkc.infer.scores) adds every forward's attention probabilities (summed
over layers, heads and real queries) into each slot's `score`. The policy reads a row's clock from
its slots: L = the newest key's position + 1 (prompt plus generated tokens so far).
  * When L % interval == interval - window (mod interval) it zeroes the row's `score` (in place on the
    slot view: the engine's buffer). The next `window` decode queries then fill it, so at
  * L % interval == 0 the score is the attention of exactly the last `window` queries to every key.
    A row compresses there, when its trigger holds and the window holds no prompt query (the newest
    prompt key, if still cached, is at or before L - 1 - window): a prompt longer than the budget is
    prefilled in full and trimmed at the first such step.
Between these steps a row keeps every key. Row moves, preemption and slot refills carry or clear
`score` with the slots, so nothing else needs tracking. Named choice: the clock counts positions
(prompt + generated), not generated tokens, since a slot view no longer knows the prompt length once
its keys are evicted."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from thinkc.gist.rule import Role
from thinkc.infer.policies.base import SlotView


def row_clock(slots: SlotView) -> torch.Tensor:
    """[B] tokens each row has seen so far: its newest valid position + 1 (0 for an empty row)."""
    pos = torch.where(slots.valid, slots.pos.long(), torch.full_like(slots.pos.long(), -1))
    return pos.max(1).values + 1 if pos.shape[1] else torch.zeros(pos.shape[0], dtype=torch.long)


def window_ready(slots: SlotView, clock: torch.Tensor, interval: int, window: int) -> torch.Tensor:
    """[B] bool: rows at a compression step whose score holds only the last `window` decode queries."""
    prompt = slots.valid & (slots.role.long() == int(Role.PROMPT))
    newest_prompt = torch.where(prompt, slots.pos.long(), torch.full_like(slots.pos.long(), -1)).max(1).values \
        if prompt.shape[1] else torch.full_like(clock, -1)
    return (clock > 0) & (clock % interval == 0) & (newest_prompt <= clock - 1 - window)


def reset_window(slots: SlotView, clock: torch.Tensor, interval: int, window: int) -> None:
    """Zero `score` of the rows whose observation window starts at the next query (in place)."""
    start = (clock > 0) & (clock % interval == (interval - window) % interval)
    slots.score.masked_fill_(start[:, None], 0.0)


def pooled_share(slots: SlotView, candidates: torch.Tensor, kernel: int) -> torch.Tensor:
    """[B, K] float64: each slot's share of the window's attention (score over the row's total, so the
    mean over layers, heads and window queries), zero outside `candidates`, then 1-D max-pooled over
    slot order (= position order) with `kernel`, stride 1, same length."""
    score = slots.score.double()
    total = score.sum(1, keepdim=True).clamp(min=1e-30)
    share = torch.where(candidates, score / total, torch.zeros_like(score))
    if kernel > 1 and share.shape[1]:
        share = F.max_pool1d(share[:, None], kernel, stride=1, padding=kernel // 2)[:, 0]
    return torch.where(candidates, share, torch.zeros_like(share))


def top_mask(value: torch.Tensor, candidates: torch.Tensor, n: int) -> torch.Tensor:
    """Bool [B, K]: among `candidates`, the n with the highest value per row (ties: older slot first)."""
    v = torch.where(candidates, value, torch.full_like(value, float("-inf")))
    rank = v.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    return candidates & (rank < n)


def check_window(budget, window: int, interval: int, what: str) -> int:
    if isinstance(budget, float) or isinstance(budget, bool):
        raise ValueError(f"{what} needs an absolute budget (a key count), got {budget}")
    budget = int(budget)
    if window < 1 or interval < 1:
        raise ValueError(f"{what} window and interval must be >= 1")
    if budget <= window:
        raise ValueError(f"{what} budget ({budget}) must exceed the window ({window})")
    if window > interval:
        raise ValueError(f"{what} window ({window}) must not exceed the compression interval ({interval})")
    return budget
