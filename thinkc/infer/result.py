"""What a decode run returns per sample, and the forced-compression table."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

ForceFn = Callable[[int, int], bool]  # (sample index, tokens generated so far) -> force a compression now


@dataclass
class DecodeResult:
    """One sample's output. `aug_*` (recorded runs only) is the augmented sequence as fed (prompt,
    generated tokens, gist blocks), position i = absolute position i. `logits` (recorded runs) pairs
    each generated token with the augmented index of the query that produced it and its logits.
    `wall_s` is the sample's own latency, from admission into a slot to its last token."""

    index: int
    tokens: list[int] = field(default_factory=list)
    aug_ids: list[int] = field(default_factory=list)
    aug_roles: list[int] = field(default_factory=list)
    aug_segs: list[int] = field(default_factory=list)
    logits: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    wall_s: float = 0.0
    peak_kv: int = 0
    dependency: int = 0
    compressions: int = 0
    kv_trace: list[int] = field(default_factory=list)
    stopped_by_eos: bool = False
    prompt_len: int = 0

    def metrics(self) -> dict:
        return {"wall_s": round(self.wall_s, 4), "generated_tokens": len(self.tokens), "peak_kv": self.peak_kv,
                "dependency": self.dependency, "compressions": self.compressions, "kv_trace": self.kv_trace}


def force_table(force, sample_index: int, max_new: int) -> torch.Tensor:
    """bool [max_new + 1]: entry n forces a compression right after the n-th generated token.
    `force`: None, an int (every N tokens), a dict {sample index: {n, ...}} or a function (index, n) -> bool."""
    out = torch.zeros(max_new + 1, dtype=torch.bool)
    if force is None:
        return out
    if isinstance(force, int) and not isinstance(force, bool):
        if force > 0:
            out[force::force] = True
        return out
    if callable(force):
        out[1:] = torch.tensor([bool(force(sample_index, n)) for n in range(1, max_new + 1)])
        return out
    for n in dict(force).get(sample_index, ()):
        if 0 < int(n) <= max_new:
            out[int(n)] = True
    return out
