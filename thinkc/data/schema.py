"""The record every thinkc tool reads and writes (design.md §1): one JSON object per line,
{"id", "question", "thinking", "answer", "system"?, "meta"?}. `thinking` is what an R1-style model
writes between <think> and </think>; `answer` is the response after it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable

from thinkc.errors import ThinkcError
from thinkc.io import iter_jsonl, write_jsonl

REQUIRED = ("id", "question", "thinking", "answer")
OPTIONAL = ("system", "meta")


@dataclass
class Record:
    id: str
    question: str
    thinking: str
    answer: str
    system: str | None = None
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"id": self.id, "question": self.question, "thinking": self.thinking, "answer": self.answer}
        if self.system is not None:
            d["system"] = self.system
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        """Validate and build; ValueError names the first problem found."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        unknown = sorted(set(d) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(REQUIRED + OPTIONAL)})")
        rid = d["id"]
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)  # numeric ids are common in public dumps; keep them as text
        if not isinstance(rid, str) or not rid:
            raise ValueError("field 'id' must be a non-empty string")
        for k in ("question", "thinking", "answer"):
            if not isinstance(d[k], str):
                raise ValueError(f"field {k!r} must be a string, got {type(d[k]).__name__}")
        if not d["question"].strip():
            raise ValueError("field 'question' is empty")
        if not d["answer"].strip():
            raise ValueError("field 'answer' is empty")
        system = d.get("system")
        if system is not None and not isinstance(system, str):
            raise ValueError(f"field 'system' must be a string or null, got {type(system).__name__}")
        meta = d.get("meta") or {}
        if not isinstance(meta, dict):
            raise ValueError(f"field 'meta' must be an object, got {type(meta).__name__}")
        return cls(rid, d["question"], d["thinking"], d["answer"], system, dict(meta))


def read_records_with_skips(path: str | os.PathLike, skip_invalid: bool = True) -> tuple[list[Record], int]:
    """(records, skipped). A bad line (not JSON, or not a valid record) raises ThinkcError
    "file:line: reason" unless `skip_invalid`, in which case it is counted and skipped. Duplicate
    ids are an error too (CTS score stores and resumable jobs key on them)."""
    path = os.fspath(path)
    records, skipped, seen = [], 0, {}
    lines = iter_jsonl(path, tolerant=skip_invalid)
    for lineno, obj in lines:
        if obj is None:  # malformed JSON, already known to be skippable
            skipped += 1
            continue
        try:
            rec = Record.from_dict(obj)
            if rec.id in seen:
                raise ValueError(f"duplicate id {rec.id!r} (first on line {seen[rec.id]})")
        except ValueError as e:
            if skip_invalid:
                skipped += 1
                continue
            raise ThinkcError(f"{path}:{lineno}: {e}") from None
        seen[rec.id] = lineno
        records.append(rec)
    return records, skipped


def read_records(path: str | os.PathLike, skip_invalid: bool = False) -> list[Record]:
    return read_records_with_skips(path, skip_invalid)[0]


def write_records(path: str | os.PathLike, records: Iterable[Record | dict]) -> int:
    """Atomic JSONL write (a killed write leaves the old file, never half a new one)."""
    return write_jsonl(path, (r.to_dict() if isinstance(r, Record) else Record.from_dict(r).to_dict()
                              for r in records))
