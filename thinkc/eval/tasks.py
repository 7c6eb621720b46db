"""One definition per benchmark, used by `thinkc infer`, `thinkc eval` and the lighteval tasks
(thinkc.eval.lighteval_tasks) alike: the loader (file row -> thinkc record), the prompt, the gold
answer and the grading.

Loaders read local copies as their datasets publish them (no hub access):
- MATH-500 (HuggingFaceH4/MATH-500): JSONL with problem, solution, answer, subject, level, unique_id.
- AIME (e.g. Maxwell-Jia/AIME_2024: ID, Problem, Solution, Answer; later years: id, problem, answer).
- GPQA-Diamond (Idavidrein/gpqa): CSV/JSONL with Question, Correct Answer, Incorrect Answer 1..3;
  the four options are shuffled with a fixed seed per question and the gold is the letter.
- GSM8K (openai/gsm8k): JSONL with question and answer ending in "#### N" (some copies add idx).
A thinkc records file (id, question, answer) passes through with its gold extracted.

Ids come from the file's own id field (unique_id, ID/id, Record ID, idx) or, when it has none, a
hash of the question: never the row position, so a slice or a reordered copy grades against the
right gold. `path` may be a file (.jsonl, .json, .csv, .parquet; a JSON array saved as .jsonl is
read too) or a folder holding test.jsonl or one such file.

Prompt (`prompt_ids`): the user turn is the question verbatim (GPQA: with its lettered options),
no appended instruction; the system turn is the record's `system`; then the model's chat template
with the generation prompt, then "<think>\n", exactly as training lays samples out
(thinkc.gist.layout.build_prompt). Grading: thinkc.eval.answers.grade (math-verify; letters for GPQA).
"""
from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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
        if _starts_with_bracket(path):  # a JSON array saved under a .jsonl name
            return _json_list(path)
        return [row for _, row in iter_jsonl(path)]
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:  # JSONL saved with a .json name
            return [row for _, row in iter_jsonl(path)]
        return _as_list(path, data)
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    return read_parquet(path)


def _starts_with_bracket(path: Path) -> bool:
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    return head.startswith("[")


def _json_list(path: Path) -> list:
    try:
        return _as_list(path, json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        raise ThinkcError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def _as_list(path: Path, data) -> list:
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ThinkcError(f"{path}: expected a list of objects")
    return data


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
    if {"question", "answer"} <= keys:  # thinkc records whose id was left out
        raise ThinkcError("rows have a question and an answer but no 'id' field: give every record an id "
                          "(GSM8K rows are recognised by the '#### <answer>' in their answer)")
    raise ThinkcError(
        f"unknown benchmark layout (columns: {', '.join(sorted(keys)[:8])}); "
        f"expected one of {', '.join(BENCHMARKS)}"
    )


def _row_id(row: dict, name: str, text: str, *keys: str) -> str:
    """The row's own id field, else "<name>-<hash of the question>" (never the row position)."""
    for k in keys:
        if row.get(k) not in (None, ""):
            return str(row[k])
    return f"{name}-{hashlib.sha1(str(text).strip().encode('utf-8')).hexdigest()[:12]}"


def _math500(row: dict) -> dict:
    return {
        "id": _row_id(row, "math500", row["problem"], "unique_id", "id", "idx"),
        "question": row["problem"],
        "answer": str(row["answer"]).strip(),
        "meta": {k: row[k] for k in ("subject", "level") if k in row},
    }


def _aime(row: dict) -> dict:
    get = lambda k: row[k] if k in row else row[k.lower()]  # noqa: E731
    return {
        "id": _row_id(row, "aime", get("Problem"), "ID", "id", "idx", "url"),
        "question": get("Problem"),
        "answer": str(get("Answer")).strip(),
    }


def _gsm8k(row: dict) -> dict:
    return {
        "id": _row_id(row, "gsm8k", row["question"], "idx", "id"),
        "question": row["question"],
        "answer": gold_from_reference(row["answer"]),
    }


def _gpqa(row: dict, seed: int = 0) -> dict:
    rid = _row_id(row, "gpqa", row["Question"], "Record ID", "id", "idx")
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


def _thinkc(row: dict) -> dict:
    rec = {"id": str(row["id"]), "question": row["question"], "answer": gold_from_reference(row.get("answer"))}
    rec.update({k: row[k] for k in ("system", "choices", "meta") if k in row})  # what prompts may use
    return rec


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: how a file row becomes a thinkc record, where lighteval finds its local copy
    (a folder under the benchmarks root), and whether the gold is an option letter."""
    name: str
    folder: str
    convert: Callable[[dict, int], dict]  # (file row, GPQA shuffle seed) -> record
    letters: bool = False


DEFINITIONS = {
    "math500": Benchmark("math500", "math500", lambda row, seed: _math500(row)),
    "aime": Benchmark("aime", "aime", lambda row, seed: _aime(row)),
    "gpqa": Benchmark("gpqa", "gpqa_diamond", _gpqa, letters=True),
    "gsm8k": Benchmark("gsm8k", "gsm8k", lambda row, seed: _gsm8k(row)),
    "thinkc": Benchmark("thinkc", "thinkc", lambda row, seed: _thinkc(row)),
}


def to_record(row: dict, kind: str, seed: int = 0) -> dict:
    """One file row of benchmark `kind` as a thinkc record (KeyError names a missing field)."""
    rec = DEFINITIONS[kind].convert(row, seed)
    rec["source"] = kind
    return rec


def load_benchmark(path: str | Path, name: str = "auto", seed: int = 0) -> list[dict]:
    """Read a local benchmark copy into records {id, question, answer (gold), choices?, meta?}."""
    if name not in ("auto", *BENCHMARKS):
        raise ThinkcError(f"unknown benchmark {name!r}; choose auto or one of {', '.join(BENCHMARKS)}")
    rows = read_rows(path)
    if not rows:
        raise ThinkcError(f"{path}: no rows")
    try:
        kind = detect(rows[0]) if name == "auto" else name
    except ThinkcError as e:
        raise ThinkcError(f"{path}: {e}") from None
    out, seen = [], set()
    for i, row in enumerate(rows):
        if kind == "thinkc" and isinstance(row, dict) and row.get("id") in (None, ""):
            raise ThinkcError(f"{path}: row {i + 1}: 'id' is {'null' if row.get('id') is None else 'empty'}; "
                              "give every record an id")
        try:
            rec = to_record(row, kind, seed)
        except KeyError as e:
            raise ThinkcError(f"{path}: row {i + 1} has no {e.args[0]!r} field ({kind} layout)") from None
        if rec["id"] in seen:
            raise ThinkcError(f"{path}: duplicate id {rec['id']!r} (row {i + 1})")
        seen.add(rec["id"])
        out.append(rec)
    return out


def prompt_ids(record: dict | str, tokenizer, layout=None) -> list[int]:
    """The prompt tokens every thinkc path feeds for a record (see the module doc): chat template
    of (system, question verbatim) with the generation prompt, then "<think>\\n". `layout` is the
    model's gist config (the prompt is the same for every layout that does not compress it)."""
    from thinkc.gist.config import GistConfig
    from thinkc.gist.layout import build_prompt

    return build_prompt(record, tokenizer, layout if layout is not None else GistConfig(mode="normal"))


THINK_PREFILL_BLOCK = "{% if add_generation_prompt %}<think>\n{% endif %}"


def think_prefill_template(template: str) -> str:
    """A chat template that renders thinkc's prompt for other tools (lighteval's transformers or
    vLLM backends, vLLM / SGLang servers): `template`, then "<think>\\n" after the generation
    prompt. Set it on the tokenizer handed to them; thinkc itself adds the prefill in
    `prompt_ids` and keeps the checkpoint's own template."""
    if template.rstrip().endswith(THINK_PREFILL_BLOCK):
        return template
    return template + THINK_PREFILL_BLOCK
