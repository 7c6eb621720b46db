"""Convert public reasoning-data layouts to thinkc records (design.md §1).

  stratos   Bespoke-Stratos-17k / ShareGPT: {"system", "conversations": [{"from": "user"|"human",
            "value"}, {"from": "assistant"|"gpt", "value": "<|begin_of_thought|>…<|end_of_thought|>
            <|begin_of_solution|>…<|end_of_solution|>"}]}
  openr1    OpenR1-Math-220k: {"problem", "generations": ["<think>…</think> answer", ...],
            "correctness_math_verify", "is_reasoning_complete", "messages", "uuid", "answer", ...};
            the first generation that math-verify marked correct (else the first complete one)
  messages  chat JSONL: {"messages": [{"role": "system"|"user"|"assistant", "content"}]}, the
            assistant content holding <think>…</think> then the answer
  alpaca    Alpaca JSON (what `thinkc data export --format alpaca` writes, LLaMA-Factory "alpaca"):
            {"instruction", "input", "output": "<think>…</think> answer", "system"?, "id"?, "meta"?}
  thinkc    our own records (id, question, thinking, answer[, system, meta])

`data import` reads back both `data export` formats (messages, alpaca) with id and meta; a
"\n<ratio>R</ratio>" tag the export appended is removed again when R is the meta's CTS ratio.

Input: JSONL, a JSON array, or Parquet (the format the Hub serves these sets in). Records without
an id get "<file stem>-<line>". A bad row raises ThinkcError "file:line: reason"; with
skip_invalid it is counted in `skipped` instead."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterator

from thinkc.data.exporters import strip_ratio_tag
from thinkc.data.schema import Record
from thinkc.errors import ThinkcError
from thinkc.io import decode_utf8, iter_jsonl_lines, read_parquet

FORMATS = ("auto", "stratos", "openr1", "messages", "alpaca", "thinkc")

_STRATOS = re.compile(r"<\|begin_of_thought\|>(.*?)<\|end_of_thought\|>\s*"
                      r"<\|begin_of_solution\|>(.*?)(?:<\|end_of_solution\|>|$)", re.S)
_THINK_CLOSE = "</think>"


def split_think(text: str) -> tuple[str, str]:
    """(thinking, answer) from "<think>…</think>answer"; the opening tag may be missing (chat
    templates often put it in the prompt). ValueError when there is no </think>."""
    if _THINK_CLOSE not in text:
        raise ValueError("assistant text has no <think>…</think> block")
    head, answer = text.split(_THINK_CLOSE, 1)
    head = head.strip()
    if head.startswith("<think>"):
        head = head[len("<think>"):]
    elif "<think>" in head:
        head = head.split("<think>", 1)[1]
    return head.strip(), answer.strip()


def _turns(conv: list, role_key: str, text_key: str) -> dict[str, str]:
    """First text per role (user/assistant/system), normalising ShareGPT's human/gpt."""
    alias = {"human": "user", "gpt": "assistant", "model": "assistant"}
    out: dict[str, str] = {}
    if not isinstance(conv, list):
        raise ValueError("conversation must be a list of turns")
    for turn in conv:
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise ValueError(f"each turn needs {role_key!r} and {text_key!r}")
        role = alias.get(turn[role_key], turn[role_key])
        if isinstance(turn[text_key], str):
            out.setdefault(role, turn[text_key])
    for role in ("user", "assistant"):
        if role not in out:
            raise ValueError(f"no {role} turn")
    return out


def from_stratos(obj: dict, default_id: str) -> Record:
    turns = _turns(obj.get("conversations"), "from", "value")
    m = _STRATOS.search(turns["assistant"])
    if not m:
        raise ValueError("assistant turn lacks <|begin_of_thought|>…<|end_of_thought|> <|begin_of_solution|>…")
    return Record.from_dict({"id": _id(obj, default_id), "question": turns["user"].strip(),
                             "thinking": m.group(1).strip(), "answer": m.group(2).strip(),
                             "system": obj.get("system") or turns.get("system")})


def from_openr1(obj: dict, default_id: str) -> Record:
    if not isinstance(obj.get("problem"), str):
        raise ValueError("missing field 'problem'")
    gens = obj.get("generations") or []
    if not isinstance(gens, list):
        raise ValueError("'generations' must be a list of strings")
    text = _pick_generation(obj, gens)
    if text is None:  # no generations column: the assistant turn of `messages`
        text = _turns(obj.get("messages"), "role", "content")["assistant"]
    thinking, answer = split_think(text)
    meta = {k: obj[k] for k in ("answer", "source", "problem_type", "question_type") if k in obj}
    if "answer" in meta:
        meta["reference_answer"] = meta.pop("answer")
    return Record.from_dict({"id": str(obj.get("uuid") or _id(obj, default_id)), "question": obj["problem"].strip(),
                             "thinking": thinking, "answer": answer, "meta": meta})


def _pick_generation(obj: dict, gens: list) -> str | None:
    if not gens:
        return None
    correct = obj.get("correctness_math_verify") or [None] * len(gens)
    complete = obj.get("is_reasoning_complete") or [True] * len(gens)
    for i, g in enumerate(gens):
        if i < len(correct) and correct[i] and (i >= len(complete) or complete[i]):
            return g
    for i, g in enumerate(gens):
        if i >= len(complete) or complete[i]:
            return g
    raise ValueError("no complete generation (is_reasoning_complete is false for all)")


def _meta(obj: dict) -> dict:
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError(f"field 'meta' must be an object, got {type(meta).__name__}")
    return meta


def from_messages(obj: dict, default_id: str) -> Record:
    turns = _turns(obj.get("messages"), "role", "content")
    thinking, answer = split_think(turns["assistant"])
    meta = _meta(obj)
    return Record.from_dict({"id": _id(obj, default_id), "question": strip_ratio_tag(turns["user"].strip(), meta),
                             "thinking": thinking, "answer": answer, "system": turns.get("system"), "meta": meta})


def from_alpaca(obj: dict, default_id: str) -> Record:
    for key in ("instruction", "output"):
        if not isinstance(obj.get(key), str):
            raise ValueError(f"missing string field {key!r}")
    extra = obj.get("input") or ""
    question = obj["instruction"].strip() + (f"\n\n{extra.strip()}" if str(extra).strip() else "")
    thinking, answer = split_think(obj["output"])
    meta = _meta(obj)
    return Record.from_dict({"id": _id(obj, default_id), "question": strip_ratio_tag(question, meta),
                             "thinking": thinking, "answer": answer, "system": obj.get("system") or None,
                             "meta": meta})


def from_thinkc(obj: dict, default_id: str) -> Record:
    return Record.from_dict(obj)


CONVERTERS = {"stratos": from_stratos, "openr1": from_openr1, "messages": from_messages, "alpaca": from_alpaca,
              "thinkc": from_thinkc}


def detect_format(obj: dict) -> str:
    if "conversations" in obj:
        return "stratos"
    if "problem" in obj and ("generations" in obj or "messages" in obj):
        return "openr1"
    if "messages" in obj:
        return "messages"
    if {"question", "thinking", "answer"} <= set(obj):
        return "thinkc"
    if {"instruction", "output"} <= set(obj):
        return "alpaca"
    raise ValueError(f"unknown layout (keys: {', '.join(sorted(obj)[:8])}); pass --format")


def import_file(path: str | os.PathLike, fmt: str = "auto", skip_invalid: bool = False) -> tuple[list[Record], int]:
    """(records, skipped) from `path` in layout `fmt` (see module doc)."""
    if fmt not in FORMATS:
        raise ThinkcError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    path = Path(path)
    records, skipped, seen = [], 0, set()
    for where, obj in _rows(path, skip_invalid):
        try:
            if obj is None:
                raise ValueError("not a JSON object")
            if fmt == "auto":
                fmt = detect_format(obj)  # the first good row decides for the whole file
            rec = CONVERTERS[fmt](obj, f"{path.stem}-{where}")
            if rec.id in seen:
                raise ValueError(f"duplicate id {rec.id!r}")
        except ValueError as e:
            if skip_invalid:
                skipped += 1
                continue
            raise ThinkcError(f"{path}:{where}: {e}") from None
        seen.add(rec.id)
        records.append(rec)
    return records, skipped


def _id(obj: dict, default: str) -> str:
    rid = obj.get("id")
    return str(rid) if rid not in (None, "") else default


def _rows(path: Path, tolerant: bool) -> Iterator[tuple[int, dict | None]]:
    """(line or row number, object) from JSONL, a JSON array or Parquet. Malformed JSONL lines
    raise ThinkcError, or yield None when `tolerant`."""
    if not path.is_file():
        raise ThinkcError(f"{path}: no such file")
    if path.suffix == ".parquet":
        yield from enumerate(read_parquet(path), 1)
        return
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        f.seek(0)
        if head[:1] == b"[":  # a JSON array: rows are numbered from 1
            text = decode_utf8(f.read(), path).removeprefix("\ufeff")
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ThinkcError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
            for i, row in enumerate(data, 1):
                yield i, row if isinstance(row, dict) else None
            return
        yield from iter_jsonl_lines(f, path, tolerant)
