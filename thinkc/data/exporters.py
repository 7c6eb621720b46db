"""Write records in the layouts trainers read (design.md §1):

  messages JSONL  {"id", "messages": [{"role": "system"?}, {"role": "user"}, {"role": "assistant"}]}
                  (TRL SFTTrainer, LLaMA-Factory "sharegpt" with messages/role/content tags)
  Alpaca JSON     [{"instruction", "input": "", "output", "system"?}] (LLaMA-Factory "alpaca")

The assistant text is "<think>\\n{thinking}\\n</think>\\n\\n{answer}", as R1-style chat templates
write it.

ratio_tag (TokenSkip-style controllable compression): the prompt gets "\\n<ratio>R</ratio>" appended,
R being the CTS keep ratio of the record's thinking (meta["cts"]["ratio"], written by
`thinkc data cts`); a record that was not compressed gets R = 1. Trained on a mix of ratios, the
model then follows the ratio asked for in the prompt at inference time."""
from __future__ import annotations

import os
from typing import Iterable

from thinkc.data.schema import Record
from thinkc.io import write_json, write_jsonl


def assistant_text(rec: Record) -> str:
    return f"<think>\n{rec.thinking}\n</think>\n\n{rec.answer}"


def ratio_of(rec: Record) -> float:
    cts = rec.meta.get("cts") if isinstance(rec.meta, dict) else None
    return float(cts["ratio"]) if isinstance(cts, dict) and "ratio" in cts else 1.0


def prompt_text(rec: Record, ratio_tag: bool = False) -> str:
    return f"{rec.question}\n<ratio>{ratio_of(rec):g}</ratio>" if ratio_tag else rec.question


def to_messages(rec: Record, ratio_tag: bool = False) -> dict:
    msgs = [{"role": "system", "content": rec.system}] if rec.system else []
    msgs += [{"role": "user", "content": prompt_text(rec, ratio_tag)},
             {"role": "assistant", "content": assistant_text(rec)}]
    return {"id": rec.id, "messages": msgs}


def to_alpaca(rec: Record, ratio_tag: bool = False) -> dict:
    row = {"instruction": prompt_text(rec, ratio_tag), "input": "", "output": assistant_text(rec)}
    if rec.system:
        row["system"] = rec.system
    return row


def export_messages(records: Iterable[Record], path: str | os.PathLike, ratio_tag: bool = False) -> int:
    """Atomic JSONL write; returns the number of rows."""
    return write_jsonl(path, (to_messages(r, ratio_tag) for r in records))


def export_alpaca(records: Iterable[Record], path: str | os.PathLike, ratio_tag: bool = False) -> int:
    """Atomic JSON-array write; returns the number of rows."""
    rows = [to_alpaca(r, ratio_tag) for r in records]
    write_json(path, rows)
    return len(rows)
