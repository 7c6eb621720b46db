"""Per-token score persistence in resumable chunks (so new ratios never need rescoring).

Layout of a score store (one folder per backend run):

    <root>/shard-<i>-of-<n>/meta.json            settings the scores depend on (checked on reuse)
    <root>/shard-<i>-of-<n>/chunk-000012.npz     records [12*C, 13*C) of that shard's record list
    <root>/shard-<i>-of-<n>/chunk-000012.r0.5.npz  text backends (LLMLingua): one file per ratio

A chunk file holds `index` (UTF-8 JSON: [{"id", "text"?}...]), `ids` (int32, concatenated
thinking token ids), `scores` (float32, aligned with ids) and `offsets` (int64, per-record starts).
Each chunk is written atomically once complete, so after a kill -9 a re-run finds whole chunks
only and recomputes exactly the missing ones with the same batch composition (bit-identical scores).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from thinkc.errors import ThinkcError
from thinkc.io import atomic_write, write_json


def shard_dir(root: Path, shard: tuple[int, int]) -> Path:
    return Path(root) / f"shard-{shard[0]}-of-{shard[1]}"


def chunk_name(k: int, ratio: float | None = None) -> str:
    return f"chunk-{k:06d}.npz" if ratio is None else f"chunk-{k:06d}.r{ratio:g}.npz"


def open_shard(root: Path, shard: tuple[int, int], meta: dict) -> Path:
    """Create the shard folder with `meta`, or check that an existing one was made with the same
    settings (mixing scores from another model, tokenizer, prefix or input would be silent garbage)."""
    d = shard_dir(root, shard)
    path = d / "meta.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = [k for k in sorted(set(old) | set(meta)) if old.get(k) != meta.get(k)]
        if diff:
            k = diff[0]
            raise ThinkcError(f"score store {d} was made with other settings ({k}: {old.get(k)!r} there, "
                              f"{meta.get(k)!r} now); pass another --scores folder or delete that one")
    else:
        d.mkdir(parents=True, exist_ok=True)
        write_json(path, meta)
    return d


def write_chunk(path: Path, entries: list[dict]) -> None:
    """entries: {"id", "ids", "scores"} (token scores) or {"id", "text"} (text backends)."""
    index = [{k: v for k, v in e.items() if k in ("id", "text")} for e in entries]
    ids = [np.asarray(e.get("ids", []), dtype=np.int32) for e in entries]
    scores = [np.asarray(e.get("scores", []), dtype=np.float32) for e in entries]
    offsets = np.cumsum([0] + [len(a) for a in ids]).astype(np.int64)
    buf = io.BytesIO()
    np.savez(buf, index=np.frombuffer(json.dumps(index, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
             ids=np.concatenate(ids) if ids else np.zeros(0, np.int32),
             scores=np.concatenate(scores) if scores else np.zeros(0, np.float32), offsets=offsets)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def read_chunk(path: Path) -> list[dict]:
    try:
        with np.load(path, allow_pickle=False) as z:
            index = json.loads(z["index"].tobytes().decode("utf-8"))
            ids, scores, off = z["ids"], z["scores"], z["offsets"]
    except Exception as e:  # noqa: BLE001 - a damaged file is a user-fixable condition
        raise ThinkcError(f"{path}: unreadable score chunk ({e}); delete it and re-run to rescore it") from None
    return [{**e, "ids": ids[off[i]:off[i + 1]], "scores": scores[off[i]:off[i + 1]]} for i, e in enumerate(index)]


def load_store(root: Path, ratio: float | None = None) -> dict[str, dict]:
    """All entries of every shard under `root` by record id (for one ratio with text backends)."""
    out: dict[str, dict] = {}
    suffix = ".npz" if ratio is None else f".r{ratio:g}.npz"
    for d in sorted(Path(root).glob("shard-*-of-*")):
        for p in sorted(d.glob("chunk-*.npz")):
            if p.name.endswith(suffix) and (ratio is not None or p.name.count(".") == 1):
                for e in read_chunk(p):
                    out[e["id"]] = e
    return out
