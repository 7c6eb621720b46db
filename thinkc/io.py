"""Atomic writes and JSONL reading with line numbers. Every output file thinkc writes goes
through `atomic_write` (temp file in the same directory + fsync + rename): a killed job leaves
either the old file or the new one, never half of one."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from thinkc.errors import ThinkcError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temp file next to `path`; on clean exit fsync and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def iter_jsonl(path: str | os.PathLike, tolerant: bool = False) -> Iterator[tuple[int, dict | None]]:
    """Yield (line_number, object) for each non-blank line. A line that is not a JSON object raises
    ThinkcError naming the file and line, or, when `tolerant`, is yielded as (line_number, None)
    so the caller can count and skip it."""
    path = Path(path)
    if not path.is_file():
        raise ThinkcError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        yield from iter_jsonl_lines(f, path, tolerant)


def iter_jsonl_lines(lines: Iterable[str], path, tolerant: bool = False) -> Iterator[tuple[int, dict | None]]:
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if not tolerant:
                raise ThinkcError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            obj = None
        if not isinstance(obj, dict):
            if not tolerant:
                raise ThinkcError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            obj = None
        yield lineno, obj


def read_parquet(path: str | os.PathLike) -> list[dict]:
    """Rows of a Parquet file as dicts (pyarrow is optional: a clear error without it)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ThinkcError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    return pq.read_table(path).to_pylist()
