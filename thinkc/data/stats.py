"""Numbers `thinkc data stats` prints: record count, token lengths of thinking and answer
(percentiles), thoughts per record."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from thinkc.data.schema import Record
from thinkc.data.segment import split_thoughts

PERCENTILES = (0, 50, 90, 99, 100)


@dataclass
class Distribution:
    mean: float
    percentiles: dict[int, float]  # p -> value (nearest-rank)
    total: int

    @classmethod
    def of(cls, values: Sequence[int]) -> "Distribution":
        if not values:
            return cls(0.0, {p: 0.0 for p in PERCENTILES}, 0)
        s = sorted(values)
        pct = {p: float(s[min(len(s) - 1, max(0, -(-p * len(s) // 100) - 1))]) for p in PERCENTILES}
        return cls(sum(s) / len(s), pct, sum(s))


@dataclass
class DataStats:
    count: int
    thinking_tokens: Distribution
    answer_tokens: Distribution
    thoughts: Distribution


def compute_stats(records: Iterable[Record], count_tokens: Callable[[list[str]], list[int]],
                  batch: int = 512, progress: Callable[[int], None] | None = None) -> DataStats:
    """`count_tokens(texts) -> lengths` (batched, e.g. a fast tokenizer's __call__)."""
    records = list(records)
    think, ans = [], []
    for i in range(0, len(records), batch):
        chunk = records[i:i + batch]
        think += count_tokens([r.thinking for r in chunk])
        ans += count_tokens([r.answer for r in chunk])
        if progress:
            progress(len(chunk))
    thoughts = [len(split_thoughts(r.thinking)) for r in records]
    return DataStats(len(records), Distribution.of(think), Distribution.of(ans), Distribution.of(thoughts))


def tokenizer_counter(tokenizer) -> Callable[[list[str]], list[int]]:
    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return count
