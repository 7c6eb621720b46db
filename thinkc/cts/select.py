"""Keep the highest-scoring thinking tokens at a ratio, in order, and decode them back to text.

Rules (exact, tested):
- budget = round(r * n), halves rounded up; exactly `budget` tokens are kept unless the forced
  tokens alone exceed it (then all forced tokens are kept and `over_budget` is reported).
- Forced tokens (digits, operators, format tokens, first/last k of each thought, blank-line
  boundaries) count inside the budget; the rest of the budget goes to the best scores.
- Ties are broken by position: the earlier token wins.
- A character split over several tokens (emoji, some CJK) is one unit: its tokens are kept or
  dropped together (unit score = mean of its token scores), so the decoded text never holds half a
  character. Only if the budget cannot be met with whole units is a unit split; the orphan bytes
  are then dropped from the text.
- Ratio 1.0 returns the original text byte for byte. Only the thinking is ever touched.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

DIGITS = re.compile(r"[0-9]")
OPERATORS = re.compile(r"[+*/=<>^×÷±≤≥]|(?<=[\d\s])-(?=[\d\s(])")
FORMAT = re.compile(r"\\[A-Za-z]+|[{}$]|</?think>")
BOUNDARY = re.compile(r"\n\n")  # thoughts are separated by blank lines (design.md §1)


@dataclass(frozen=True)
class SelectOptions:
    force_digits: bool = False
    force_operators: bool = False
    force_format: bool = False  # \boxed and other LaTeX commands, braces, $, <think> tags
    keep_first: int = 0  # first k tokens of every thought
    keep_last: int = 0  # last k tokens of every thought
    keep_thought_structure: bool = False  # never delete a token that carries a blank-line boundary


@dataclass
class Selection:
    keep: np.ndarray  # bool [n]
    text: str
    budget: int
    forced: int
    over_budget: bool

    @property
    def kept(self) -> int:
        return int(self.keep.sum())


def keep_count(n: int, ratio: float) -> int:
    """round(ratio * n) with halves rounded up (2.5 -> 3); the tiny round() absorbs float noise."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    return min(n, int(math.floor(round(ratio * n, 9) + 0.5)))


def token_spans(tokenizer, text: str, ids) -> list[tuple[int, int]]:
    """Character span of every token of `text` (from the fast tokenizer's offsets). The ids must be
    the ones the scorer stored; a mismatch means the tokenizer changed since scoring."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc["input_ids"]) != [int(i) for i in ids]:
        raise ValueError("stored token ids differ from the tokenizer's ids for this text "
                         "(was the score store made with another tokenizer?)")
    return [tuple(o) for o in enc["offset_mapping"]]


def _units(spans) -> list[list[int]]:
    """Consecutive tokens whose character spans overlap form one unit (a split character)."""
    units: list[list[int]] = []
    end = -1
    for i, (s, e) in enumerate(spans):
        if units and s < end:
            units[-1].append(i)
            end = max(end, e)
        else:
            units.append([i])
            end = e
    return units


def _forced(text: str, spans, opt: SelectOptions) -> np.ndarray:
    n = len(spans)
    forced = np.zeros(n, dtype=bool)
    char_force = np.zeros(len(text) + 1, dtype=bool)
    for flag, pat in ((opt.force_digits, DIGITS), (opt.force_operators, OPERATORS), (opt.force_format, FORMAT)):
        if flag:
            for m in pat.finditer(text):
                char_force[m.start():m.end()] = True
    boundary = np.zeros(len(text) + 1, dtype=bool)
    for m in BOUNDARY.finditer(text):
        boundary[m.start():m.end()] = True
    is_boundary = np.array([boundary[s:max(e, s + 1)].any() for s, e in spans], dtype=bool)
    for i, (s, e) in enumerate(spans):
        forced[i] = char_force[s:e].any() or (opt.keep_thought_structure and is_boundary[i])
    if opt.keep_first or opt.keep_last:
        thought: list[int] = []  # token indices of the current thought
        for i in list(range(n)) + [None]:
            if i is None or is_boundary[i]:
                forced[thought[:opt.keep_first]] = True
                if opt.keep_last:
                    forced[thought[-opt.keep_last:]] = True
                thought = []
            else:
                thought.append(i)
    return forced


def select_tokens(scores: np.ndarray, budget: int, forced: np.ndarray, units: list[list[int]]) -> np.ndarray:
    """The keep mask: forced units first, then whole units by (mean score desc, position asc)."""
    n = len(scores)
    keep = np.zeros(n, dtype=bool)
    for u in units:
        if forced[u].any():
            keep[u] = True
    left = budget - int(keep.sum())
    if left <= 0:
        return keep
    free = [u for u in units if not keep[u[0]]]
    ranked = sorted(free, key=lambda u: (-float(np.mean(scores[u])), u[0]))
    for u in ranked:
        if len(u) <= left:
            keep[u] = True
            left -= len(u)
            if left == 0:
                return keep
    for u in ranked:  # only multi-token units remain and none fits: split the best ones
        for i in u:
            if left and not keep[i]:
                keep[i] = True
                left -= 1
    return keep


def decode_kept(tokenizer, text: str, ids, keep: np.ndarray) -> str:
    if keep.all():
        return text
    out = tokenizer.decode([int(i) for i, k in zip(ids, keep) if k], skip_special_tokens=False,
                           clean_up_tokenization_spaces=False)
    if "\ufffd" in out and "\ufffd" not in text:
        out = out.replace("\ufffd", "")  # orphan bytes of a character whose unit had to be split
    return out


def select(tokenizer, thinking: str, ids, scores, ratio: float, options: SelectOptions = SelectOptions()) -> Selection:
    """Compress one thinking text given its stored token ids and scores."""
    ids = np.asarray(ids)
    scores = np.asarray(scores, dtype=np.float32)
    n = len(ids)
    budget = keep_count(n, ratio)
    if n == 0:
        return Selection(np.zeros(0, dtype=bool), thinking, 0, 0, False)
    spans = token_spans(tokenizer, thinking, ids)
    units = _units(spans)
    forced = _forced(thinking, spans, options)
    for u in units:  # forcing one token of a split character forces the whole character
        if forced[u].any():
            forced[u] = True
    keep = select_tokens(scores, budget, forced, units)
    n_forced = int(forced.sum())
    return Selection(keep, decode_kept(tokenizer, thinking, ids, keep), budget, n_forced, n_forced > budget)
