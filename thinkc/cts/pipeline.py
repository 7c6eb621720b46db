"""`thinkc data cts`: score once -> select per ratio -> one output file per ratio.

Resumable: scores go to a chunked store (store.py); a re-run skips finished chunks and the final
outputs are written atomically, so a killed and resumed run writes the same bytes as an
uninterrupted one. Shardable: `shard=(i, n)` scores records k with k % n == i into its own shard
folder and writes no output; a `merge` run then writes the outputs from all shards.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from thinkc.cts.backends.random import random_scores
from thinkc.cts.select import SelectOptions, select
from thinkc.cts.store import chunk_name, load_store, open_shard, write_chunk
from thinkc.errors import ThinkcError
from thinkc.io import iter_jsonl, refuse_input_as_output, write_jsonl


@dataclass
class CtsJob:
    input: Path
    output: str  # "out.jsonl" -> out.r0.5.jsonl, or a pattern with "{ratio}"
    ratios: list[float]
    backend: str = "native"
    reference: str | None = None  # local folder | smollm2 | shipped tiny name
    tokenizer: str | None = None  # counts/selection tokenizer for llmlingua2 (the target model's)
    batch_size: int = 8
    window: int | None = 2048
    device: str = "cpu"
    dtype: str = "float32"
    chunk_size: int = 64
    shard: tuple[int, int] = (0, 1)
    merge: bool = False
    scores: Path | None = None  # score store folder (default next to the output)
    # the seed's default: LLMLingua's force_reserve_digit=True (digits are never dropped)
    options: SelectOptions = field(default_factory=lambda: SelectOptions(force_digits=True))


def output_path(output: str, ratio: float) -> Path:
    if "{ratio}" in output:
        return Path(output.replace("{ratio}", f"{ratio:g}"))
    p = Path(output)
    suffix = p.suffix or ".jsonl"
    return p.with_name(f"{p.name[: len(p.name) - len(p.suffix)] if p.suffix else p.name}.r{ratio:g}{suffix}")


def default_store(job: CtsJob) -> Path:
    p = Path(job.output.replace("{ratio}", "").replace("..", "."))
    stem = p.name[: len(p.name) - len(p.suffix)] if p.suffix else p.name
    return p.with_name(f"{stem.strip('.-_') or 'cts'}.cts-{job.backend}")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ThinkcError(f"--shard wants i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ThinkcError(f"--shard {text}: need 0 <= i < n")
    return i, n


def read_input(path: Path) -> list[dict]:
    records, seen = [], set()
    for lineno, r in iter_jsonl(path):
        for k in ("id", "thinking", "answer"):
            if not isinstance(r.get(k), str):
                raise ThinkcError(f"{path}:{lineno}: field {k!r} must be a string")
        if r["id"] in seen:
            raise ThinkcError(f"{path}:{lineno}: duplicate id {r['id']!r}")
        seen.add(r["id"])
        records.append(r)
    if not records:
        raise ThinkcError(f"{path}: no records")
    return records


def _fingerprint(records: list[dict]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r["id"], r["thinking"], r["answer"]], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[tokens]} tokens, {task.fields[tps]} tok/s"), TimeElapsedColumn(),
                    console=console)


def score_shard(job: CtsJob, backend, records: list[dict], console=None) -> None:
    """Score this shard's records chunk by chunk, skipping chunks already in the store."""
    i, n = job.shard
    mine = [r for k, r in enumerate(records) if k % n == i]
    meta = {**backend.meta(), "chunk_size": job.chunk_size, "input": _fingerprint(mine), "records": len(mine)}
    d = open_shard(job.scores or default_store(job), job.shard, meta)
    chunks = [mine[k:k + job.chunk_size] for k in range(0, len(mine), job.chunk_size)]
    ratios = [None] if backend.kind == "scores" else list(job.ratios)
    todo = [(k, r) for r in ratios for k in range(len(chunks)) if not (d / chunk_name(k, r)).is_file()]
    tokens, t0 = 0, time.perf_counter()
    total = len(chunks) * len(ratios)
    if total > len(todo) and console is not None:  # a re-run: say what it reuses
        console.print(f"resuming from {total - len(todo)} of {total} chunks already scored in {d}", highlight=False)
    with _progress(console) as prog:
        done = sum(len(chunks[k]) for r in ratios for k in range(len(chunks)) if (d / chunk_name(k, r)).is_file())
        task = prog.add_task(f"CTS {backend.name} shard {i}/{n}", total=len(mine) * len(ratios), tps="-",
                             tokens="0", completed=done)

        def on_tokens(m: int):  # after every forward window: a long record moves the counter too
            nonlocal tokens
            tokens += m
            prog.update(task, tokens=f"{tokens:,}", tps=f"{tokens / max(time.perf_counter() - t0, 1e-9):,.0f}")

        for k, ratio in todo:
            chunk = chunks[k]
            if ratio is None:
                res = backend.score(chunk, on_tokens)
                entries = [{"id": r["id"], "ids": s.ids, "scores": s.scores} for r, s in zip(chunk, res)]
            else:
                texts = backend.compress(chunk, ratio, on_tokens)
                entries = [{"id": r["id"], "text": t} for r, t in zip(chunk, texts)]
            write_chunk(d / chunk_name(k, ratio), entries)
            prog.advance(task, len(chunk))


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def write_outputs(job: CtsJob, backend, tokenizer, records: list[dict]) -> list[dict]:
    """One output file per ratio from the stored scores/texts; returns the summary rows."""
    root = job.scores or default_store(job)
    rows = []
    score_entries = load_store(root) if backend.kind == "scores" else None
    for ratio in job.ratios:
        entries = score_entries if score_entries is not None else load_store(root, ratio)
        missing = [r["id"] for r in records if r["id"] not in entries]
        if missing:
            raise ThinkcError(f"{len(missing)} of {len(records)} records have no {backend.name} scores in {root} "
                              f"(first: {missing[0]!r}); run the remaining shards first")
        out, before, after, over = [], 0, 0, 0
        kinds = GapReport() if score_entries is not None and all(has_kinds(r) for r in records) else None
        for r in records:
            e = entries[r["id"]]
            n = _count(tokenizer, r["thinking"])
            if "text" in e:
                text, kept = e["text"], None
            else:
                try:
                    sel = select(tokenizer, r["thinking"], e["ids"], e["scores"], ratio, job.options)
                except ValueError as err:
                    raise ThinkcError(f"record {r['id']!r}: {err}") from None
                text, kept, over = sel.text, sel.kept, over + sel.over_budget
                if kinds is not None:
                    kinds.add(tokenizer, r, e["ids"], sel.keep, ratio, job.options)
            m = _count(tokenizer, text)
            cts = {"ratio": ratio, "tokens_before": n, "tokens_after": m, "backend": backend.name}
            if kept is not None:
                cts["tokens_kept"] = kept
            out.append({**r, "thinking": text, "meta": {**(r.get("meta") or {}), "cts": cts}})
            before, after = before + n, after + m
        path = output_path(job.output, ratio)
        write_jsonl(path, out)
        rows.append({"ratio": ratio, "records": len(out), "tokens_before": before, "tokens_after": after,
                     "achieved": round(after / max(before, 1), 4), "forced_over_budget": over, "output": str(path),
                     **(kinds.shares() if kinds is not None else {})})
    return rows


def has_kinds(record: dict) -> bool:
    return isinstance((record.get("meta") or {}).get("thought_kinds"), list)


class KindTally:
    """Kept thinking tokens inside computation vs filler thoughts, for records that mark their
    thoughts (meta.thought_kinds, as the synthetic task does): CTS should keep the first, drop the
    second. Counted with thinkc.bench.cts.kept_by_kind."""

    def __init__(self):
        self.tot: dict | None = {"compute": [0, 0], "filler": [0, 0]}

    def add(self, tokenizer, record: dict, ids, keep) -> None:
        from thinkc.bench.cts import kept_by_kind

        if self.tot is None:
            return
        try:
            counts = kept_by_kind(tokenizer, record, ids, keep)
        except ValueError:  # thought_kinds do not match this thinking's thoughts: no tally at all
            self.tot = None
            return
        for kind, (k, n) in counts.items():
            self.tot[kind][0] += k
            self.tot[kind][1] += n

    def shares(self) -> dict:
        if self.tot is None:
            return {}
        c, f = (self.tot[k][0] / max(self.tot[k][1], 1) for k in ("compute", "filler"))
        return {"compute_kept_share": round(c, 4), "filler_kept_share": round(f, 4),
                "kept_share_gap": round(c - f, 4)}


class GapReport:
    """The kept-share gap of the reference's scores, and of random scores under the same selection
    (same ratio, same forced tokens): the chance gap. Forced digits and operators sit mostly in
    computation thoughts, so forcing alone opens a gap; the difference is the reference's own.
    Random scores are seeded by record id, so the report is deterministic."""

    def __init__(self):
        self.ref, self.chance = KindTally(), KindTally()

    def add(self, tokenizer, record: dict, ids, keep, ratio: float, options: SelectOptions) -> None:
        self.ref.add(tokenizer, record, ids, keep)
        noise = random_scores(record["id"], len(ids))
        self.chance.add(tokenizer, record, ids, select(tokenizer, record["thinking"], ids, noise, ratio, options).keep)

    def shares(self) -> dict:
        out, chance = self.ref.shares(), self.chance.shares()
        if out and chance:
            out["chance_gap"] = chance["kept_share_gap"]
        return out


def check_job(job: CtsJob) -> None:
    """Settings checked before any model is loaded or folder created (ThinkcError, one line)."""
    if not job.ratios:
        raise ThinkcError("give at least one --ratio")
    for r in job.ratios:
        if not 0.0 < r <= 1.0:
            raise ThinkcError(f"--ratio {r}: must be in (0, 1]")
    for flag, value in (("--batch-size", job.batch_size), ("--chunk-size", job.chunk_size)):
        if value < 1:
            raise ThinkcError(f"{flag} {value}: must be at least 1")
    if job.window is not None and job.window < 1:
        raise ThinkcError(f"--window {job.window}: must be at least 1 (or 0 for one pass)")
    if not job.merge:
        from thinkc.models.loading import check_device

        check_device(job.device)
    for ratio in job.ratios:  # out.r0.5.jsonl or the {ratio} pattern must not name the input
        refuse_input_as_output(output_path(job.output, ratio), [job.input])


def run(job: CtsJob, model=None, tokenizer=None, console=None) -> list[dict]:
    """Score (unless merge), then write outputs (unless this is one shard of several)."""
    from thinkc.cts.backends import make_backend

    check_job(job)
    records = read_input(Path(job.input))
    if job.merge and job.backend in ("native", "unconditional", "random"):  # stored scores need no model
        from thinkc.cts.backends import StoredScores, load_reference_tokenizer

        backend = StoredScores(job.backend, tokenizer or load_reference_tokenizer(job.reference))
    else:
        backend = make_backend(job.backend, job.reference, model=model, tokenizer=tokenizer, device=job.device,
                               batch_size=job.batch_size, window=job.window, dtype=job.dtype)
    if not job.merge:
        score_shard(job, backend, records, console)
        if job.shard[1] > 1:
            return []
    # scores backends select with their own tokenizer (the stored ids); text backends count with
    # the target tokenizer (--tokenizer), defaulting to the reference model's
    count_tok = getattr(backend, "tokenizer", None)
    if backend.kind == "text" and job.tokenizer:
        count_tok = _load_tokenizer(job.tokenizer)
    if count_tok is None:
        count_tok = _load_tokenizer(job.tokenizer)
    return write_outputs(job, backend, count_tok, records)


def _load_tokenizer(name: str | None):
    if not name:
        raise ThinkcError("this backend needs --tokenizer (the target model's, for token counts)")
    from thinkc.models.loading import load_tokenizer

    return load_tokenizer(name)
