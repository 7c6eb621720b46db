"""Local copies of the standard reasoning benchmarks -> thinkc records {id, question, answer, choices?}.

Reads the files as their datasets publish them (no hub access):
- MATH-500 (HuggingFaceH4/MATH-500): JSONL with problem, solution, answer, subject, level, unique_id.
- AIME (e.g. Maxwell-Jia/AIME_2024: ID, Problem, Solution, Answer; later years: id, problem, answer).
- GPQA-Diamond (Idavidrein/gpqa): CSV/JSONL with Question, Correct Answer, Incorrect Answer 1..3;
  the four options are shuffled with a fixed seed per question and the gold is the letter.
- GSM8K (openai/gsm8k): JSONL with question and answer ending in "#### N".
A thinkc records file (id, question, answer) passes through with its gold extracted.

`path` may be a file (.jsonl, .json, .csv, .parquet) or a folder holding test.jsonl or one such file.
"""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from thinkc.errors import ThinkcError
from thinkc.eval.answers import gold_from_reference
from thinkc.io import iter_jsonl, read_parquet

BENCHMARKS = ("math500", "aime", "gpqa", "gsm8k", "thinkc")
_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
LETTERS = "ABCD"


def _resolve(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.exists():
        raise ThinkcError(f"{path}: no such file or folder")
    preferred = [path / f"test{s}" for s in _SUFFIXES] + [path / f"train{s}" for s in _SUFFIXES]
    for p in preferred:
        if p.is_file():
            return p
    found = sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES and p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise ThinkcError(f"{path}: no .jsonl/.json/.csv/.parquet file inside")
    raise ThinkcError(f"{path}: several data files ({', '.join(p.name for p in found[:4])}...); pass one")


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a local data file as dicts (JSONL, JSON list, CSV or Parquet)."""
    path = _resolve(Path(path))
    if path.suffix == ".jsonl":
        return [row for _, row in iter_jsonl(path)]
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:  # JSONL saved with a .json name
            return [row for _, row in iter_jsonl(path)]
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise ThinkcError(f"{path}: expected a list of objects")
        return data
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    return read_parquet(path)


def detect(row: dict) -> str:
    """Which benchmark layout a row is in."""
    keys = set(row)
    if {"Correct Answer", "Incorrect Answer 1"} <= keys:
        return "gpqa"
    if {"problem", "answer"} <= keys and keys & {"unique_id", "subject", "level"}:
        return "math500"
    if {"Problem", "Answer"} <= keys or {"problem", "answer"} <= keys:
        return "aime"
    if {"question", "answer"} <= keys and "id" not in keys and "####" in str(row["answer"]):
        return "gsm8k"
    if {"id", "question"} <= keys:  # thinkc records; the answer is optional for prompts-only files
        return "thinkc"
    raise ThinkcError(
        f"unknown benchmark layout (columns: {', '.join(sorted(keys)[:8])}); "
        f"expected one of {', '.join(BENCHMARKS)}"
    )


def _row_id(row: dict, index: int, name: str, *keys: str) -> str:
    for k in keys:
        if row.get(k) not in (None, ""):
            return str(row[k])
    return f"{name}-{index}"


def _math500(row: dict, i: int) -> dict:
    return {
        "id": _row_id(row, i, "math500", "unique_id", "id"),
        "question": row["problem"],
        "answer": str(row["answer"]).strip(),
        "meta": {k: row[k] for k in ("subject", "level") if k in row},
    }


def _aime(row: dict, i: int) -> dict:
    get = lambda k: row[k] if k in row else row[k.lower()]  # noqa: E731
    return {
        "id": _row_id(row, i, "aime", "ID", "id", "url"),
        "question": get("Problem"),
        "answer": str(get("Answer")).strip(),
    }


def _gsm8k(row: dict, i: int) -> dict:
    return {
        "id": _row_id(row, i, "gsm8k", "id"),
        "question": row["question"],
        "answer": gold_from_reference(row["answer"]),
    }


def _gpqa(row: dict, i: int, seed: int) -> dict:
    rid = _row_id(row, i, "gpqa", "Record ID", "id")
    options = [row["Correct Answer"]] + [row[f"Incorrect Answer {k}"] for k in (1, 2, 3)]
    options = [str(o).strip() for o in options]
    order = list(range(4))
    # Seeded per question (not per file) so a subset or a reordered file keeps each gold letter.
    random.Random(f"{seed}:{rid}").shuffle(order)
    choices = [options[j] for j in order]
    gold = LETTERS[order.index(0)]
    body = str(row["Question"]).strip()
    lines = "\n".join(f"{LETTERS[k]}) {c}" for k, c in enumerate(choices))
    return {
        "id": rid,
        "question": f"{body}\n\n{lines}",
        "answer": gold,
        "choices": choices,
        "meta": {"question": body, **{k: row[k] for k in ("High-level domain", "Subdomain") if k in row}},
    }


def _thinkc(row: dict, i: int) -> dict:
    rec = {"id": str(row["id"]), "question": row["question"], "answer": gold_from_reference(row.get("answer"))}
    rec.update({k: row[k] for k in ("system", "choices", "meta") if k in row})  # what prompts may use
    return rec


def load_benchmark(path: str | Path, name: str = "auto", seed: int = 0) -> list[dict]:
    """Read a local benchmark copy into records {id, question, answer (gold), choices?, meta?}."""
    if name not in ("auto", *BENCHMARKS):
        raise ThinkcError(f"unknown benchmark {name!r}; choose auto or one of {', '.join(BENCHMARKS)}")
    rows = read_rows(path)
    if not rows:
        raise ThinkcError(f"{path}: no rows")
    kind = detect(rows[0]) if name == "auto" else name
    convert = {"math500": _math500, "aime": _aime, "gsm8k": _gsm8k, "thinkc": _thinkc,
               "gpqa": lambda r, i: _gpqa(r, i, seed)}[kind]
    out, seen = [], set()
    for i, row in enumerate(rows):
        try:
            rec = convert(row, i)
        except KeyError as e:
            raise ThinkcError(f"{path}: row {i + 1} has no {e.args[0]!r} field ({kind} layout)") from None
        if rec["id"] in seen:
            raise ThinkcError(f"{path}: duplicate id {rec['id']!r} (row {i + 1})")
        seen.add(rec["id"])
        rec["source"] = kind
        out.append(rec)
    return out
