"""Write records in the layouts trainers read (design.md §1):

  messages JSONL  {"id", "messages": [{"role": "system"?}, {"role": "user"}, {"role": "assistant"}],
                   "meta"?} (TRL SFTTrainer, LLaMA-Factory "sharegpt" with messages/role/content tags)
  Alpaca JSON     [{"instruction", "input": "", "output", "system"?, "id", "meta"?}] (LLaMA-Factory "alpaca")

Both keep the record's id and meta (the CTS ratio included; trainers ignore the extra columns), so
`thinkc data import` reads either back into the same records. Beside each export,
`dataset_info.json` gets the entry LLaMA-Factory needs to read it (the Alpaca `system` column and
the sharegpt role/content tags are not its defaults); entries for other files there are kept.

The assistant text is "<think>\\n{thinking}\\n</think>\\n\\n{answer}", as R1-style chat templates
write it.

ratio_tag (TokenSkip-style controllable compression): the prompt gets "\\n<ratio>R</ratio>" appended,
R being the CTS keep ratio of the record's thinking (meta["cts"]["ratio"], written by
`thinkc data cts`); a record that was not compressed gets R = 1. Trained on a mix of ratios, the
model then follows the ratio asked for in the prompt at inference time."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

from thinkc.data.schema import Record
from thinkc.errors import ThinkcError
from thinkc.io import write_json, write_jsonl


def assistant_text(rec: Record) -> str:
    return f"<think>\n{rec.thinking}\n</think>\n\n{rec.answer}"


def ratio_of(rec: Record) -> float:
    cts = rec.meta.get("cts") if isinstance(rec.meta, dict) else None
    return float(cts["ratio"]) if isinstance(cts, dict) and "ratio" in cts else 1.0


def prompt_text(rec: Record, ratio_tag: bool = False) -> str:
    return f"{rec.question}\n<ratio>{ratio_of(rec):g}</ratio>" if ratio_tag else rec.question


def strip_ratio_tag(question: str, meta: dict) -> str:
    """The question without the "\n<ratio>R</ratio>" an export appended, when R is what the
    record's meta gives back (so a re-export writes the same tag); otherwise unchanged."""
    m = re.search(r"\n<ratio>([0-9.]+)</ratio>$", question)
    if m and float(m.group(1)) == ratio_of(Record("_", "_", "", "_", meta=meta)):
        return question[:m.start()]
    return question


def to_messages(rec: Record, ratio_tag: bool = False) -> dict:
    msgs = [{"role": "system", "content": rec.system}] if rec.system else []
    msgs += [{"role": "user", "content": prompt_text(rec, ratio_tag)},
             {"role": "assistant", "content": assistant_text(rec)}]
    row = {"id": rec.id, "messages": msgs}
    if rec.meta:
        row["meta"] = rec.meta
    return row


def to_alpaca(rec: Record, ratio_tag: bool = False) -> dict:
    row = {"instruction": prompt_text(rec, ratio_tag), "input": "", "output": assistant_text(rec)}
    if rec.system:
        row["system"] = rec.system
    row["id"] = rec.id
    if rec.meta:
        row["meta"] = rec.meta
    return row


def dataset_info_entry(path: str | os.PathLike, fmt: str) -> dict:
    """LLaMA-Factory's dataset_info.json entry for an export at `path`, named after the file."""
    p = Path(path)
    if fmt == "alpaca":
        entry = {"file_name": p.name, "formatting": "alpaca",
                 "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}}
    elif fmt == "messages":
        entry = {"file_name": p.name, "formatting": "sharegpt", "columns": {"messages": "messages"},
                 "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                          "assistant_tag": "assistant", "system_tag": "system"}}
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    return {p.name.split(".")[0]: entry}


def write_dataset_info(path: str | os.PathLike, fmt: str) -> Path:
    """Add (or replace) this export's entry in dataset_info.json beside it; returns that file."""
    info = Path(path).with_name("dataset_info.json")
    data = {}
    if info.is_file():
        try:
            data = json.loads(info.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ThinkcError(f"{info}: not valid JSON ({e}); fix or remove it") from None
        if not isinstance(data, dict):
            raise ThinkcError(f"{info}: expected a JSON object of dataset entries")
    data.update(dataset_info_entry(path, fmt))
    write_json(info, data)
    return info


def export_messages(records: Iterable[Record], path: str | os.PathLike, ratio_tag: bool = False) -> int:
    """Atomic JSONL write; returns the number of rows."""
    return write_jsonl(path, (to_messages(r, ratio_tag) for r in records))


def export_alpaca(records: Iterable[Record], path: str | os.PathLike, ratio_tag: bool = False) -> int:
    """Atomic JSON-array write; returns the number of rows."""
    rows = [to_alpaca(r, ratio_tag) for r in records]
    write_json(path, rows)
    return len(rows)
