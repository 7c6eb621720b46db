"""Thought segmentation (design.md §1): blank-line thoughts, or fixed-size token steps."""
from __future__ import annotations

import re

_BLANK_LINE = re.compile(r"\n[ \t]*\n\s*")


def split_thoughts(thinking: str) -> list[str]:
    """Thoughts separated by one or more blank lines (lines holding only spaces count as blank),
    stripped; never returns an empty thought. `"\\n\\n".join(...)` rebuilds a normalised trace."""
    return [t for t in (p.strip() for p in _BLANK_LINE.split(thinking)) if t]


def token_steps(ids: list[int], step: int) -> list[list[int]]:
    """Consecutive chunks of `step` token ids (the last may be shorter); [] for no ids."""
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    return [list(ids[i:i + step]) for i in range(0, len(ids), step)]
