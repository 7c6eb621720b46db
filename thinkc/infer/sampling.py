"""Next-token choice: greedy, or temperature + top-p sampling with one generator per sample.

Each sample draws from its own `torch.Generator` seeded from (seed, sample index), so a sample's
tokens do not depend on which other samples share its batch or when they finish."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


def make_generator(cfg: SamplingConfig, sample_index: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(cfg.seed * 1_000_003 + sample_index)
    return g


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail of `probs` [V] outside the smallest set whose mass reaches top_p (the most
    likely token is always kept); returns renormalised probabilities."""
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(descending=True)
    mass_before = sorted_p.cumsum(0) - sorted_p
    sorted_p = sorted_p.masked_fill(mass_before >= top_p, 0.0)
    out = torch.zeros_like(probs).scatter_(0, order, sorted_p)
    return out / out.sum()


def choose_tokens(logits: torch.Tensor, cfg: SamplingConfig, generators: list[torch.Generator]) -> list[int]:
    """One token per row of `logits` [R, V] (rows in the order of `generators`)."""
    if cfg.greedy:
        return logits.argmax(-1).tolist()
    probs = torch.softmax(logits.float().cpu() / cfg.temperature, dim=-1)
    return [int(torch.multinomial(top_p_filter(p, cfg.top_p), 1, generator=g)) for p, g in zip(probs, generators)]
