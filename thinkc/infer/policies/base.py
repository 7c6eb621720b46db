"""What a cache policy decides, kvpress style: one small class per method over one decode loop.

A policy answers two questions, both per row:
  * `block_after(row, token, forced)`: gist tokens to feed right after `token` (LightThinker/AnLLM
    compress the current thought this way), or None.
  * `keep(slots)`: which cache slots survive this step (budget policies: H2O, SepLLM, StreamingLLM).
    Keys whose gist `expire` has passed are dropped by the loop for every policy; `keep` only adds
    evictions on top.
The loop then compacts the cache in place. Attention visibility always comes from
thinkc.gist.rule.visible with the policy's `flags` / `exclude_continue`."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from thinkc.gist.rule import GistFlags, Role


@dataclass
class RowState:
    """Decoding state of one sample, seen by policies."""

    index: int  # sample index in the caller's list
    seg: int = 0  # current thought (segment) index
    thought_len: int = 0  # tokens generated in the current thought
    generated: list[int] = field(default_factory=list)
    compressions: int = 0
    thinking_closed: bool = False  # the row has emitted "</think>": token-level compression stops


@dataclass
class SlotView:
    """Per-slot metadata of the cache, [B, K] each (rows = the active batch). A slot is valid when
    doc >= 0. `pos` is the absolute position in the augmented sequence; `score` the accumulated
    attention the slot has received (only filled when the policy sets needs_attention)."""

    token: torch.Tensor
    pos: torch.Tensor
    role: torch.Tensor
    seg: torch.Tensor
    doc: torch.Tensor
    expire: torch.Tensor
    score: torch.Tensor

    @property
    def valid(self) -> torch.Tensor:
        return self.doc >= 0


class CachePolicy:
    name = "base"
    needs_attention = False  # the loop collects per-slot attention (eager attention path)
    flags = GistFlags()
    exclude_continue = False

    def block_after(self, row: RowState, token: int, forced: bool) -> list[tuple[int, Role]] | None:
        return None

    def keep(self, slots: SlotView) -> torch.Tensor | None:
        return None


def row_budget(budget: int | float, slots: SlotView, least: int) -> torch.Tensor:
    """Per-row budget [B, 1]: an int is absolute; a float in (0, 1) is that share of the positions
    the row has seen so far (prompt, generated and gist tokens), rounded up, at least `least`."""
    B = slots.pos.shape[0]
    if isinstance(budget, float):
        seen = torch.where(slots.valid, slots.pos.long(), torch.full_like(slots.pos.long(), -1)).max(1).values + 1
        return torch.ceil(budget * seen.double()).long().clamp(min=least)[:, None]
    return torch.full((B, 1), int(budget), dtype=torch.long, device=slots.pos.device)


def check_budget(budget, least: int, what: str) -> int | float:
    if isinstance(budget, float) and not isinstance(budget, bool):
        if not 0 < budget < 1:
            raise ValueError(f"{what} budget ratio must be in (0, 1), got {budget}")
        return budget
    if int(budget) < least:
        raise ValueError(f"{what} budget must be >= {least}")
    return int(budget)


def newest_mask(slots: SlotView, n) -> torch.Tensor:
    """Bool [B, K]: the n (int or [B, 1]) valid slots with the highest positions of each row."""
    pos = torch.where(slots.valid, slots.pos.long(), torch.full_like(slots.pos.long(), -1))
    rank = pos.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = newest
    return slots.valid & (rank < n)


def oldest_mask(slots: SlotView, n) -> torch.Tensor:
    """Bool [B, K]: the n valid slots with the lowest positions of each row."""
    big = torch.iinfo(torch.int64).max
    pos = torch.where(slots.valid, slots.pos.long(), torch.full_like(slots.pos.long(), big))
    rank = pos.argsort(dim=1).argsort(dim=1)
    return slots.valid & (rank < n)


def top_score_mask(slots: SlotView, candidates: torch.Tensor, n) -> torch.Tensor:
    """Bool [B, K]: among `candidates`, the n with the highest score per row (ties: older first)."""
    score = torch.where(candidates, slots.score.double(), torch.full_like(slots.score.double(), float("-inf")))
    rank = score.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    return candidates & (rank < n)
