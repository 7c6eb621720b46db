"""What `thinkc infer` writes and reads back: one JSON row per sample, the run settings a resume
must match, the run's totals and its `<output>.summary.json` (thinkc.infer.run writes, thinkc.infer.shard
merges; both import this module, neither imports the other)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from thinkc.errors import ThinkcError
from thinkc.infer.sampling import SamplingConfig


def read_done(path: str | os.PathLike) -> dict[str, dict]:
    """Rows already in an output file, by id. A torn last line (killed mid-write) is ignored."""
    done = {}
    p = Path(path)
    if not p.is_file():
        return done
    with open(p, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "id" in row:
                done[str(row["id"])] = row
    return done


@dataclass
class InferSettings:
    method: str
    model_label: str
    batch_size: int = 8
    max_new_tokens: int = 1024
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    compress_every: int | None = None  # force a compression every N generated tokens (gist methods)
    extra: dict = field(default_factory=dict)  # other settings that change results (budget, window, gist config)
    # engine settings, not in the fingerprint: greedy tokens are the same under any of them
    kv_budget: int | None = None  # KV tokens for all rows (a page pool); None: every row at full capacity
    page_size: int = 16
    compile: bool = False  # the decode step under torch.compile (CUDA graphs on GPU)
    attention: str | None = None  # how attention reads the pool (thinkc.infer.attention); None: the device's default

    def fingerprint(self) -> dict:
        """What a row's result depends on: a resume reuses only rows made with the same values.
        The batch size and the KV pool are not in it: they give every sample the same tokens."""
        s = self.sampling
        return {"method": self.method, "model": self.model_label, "max_new_tokens": self.max_new_tokens,
                "temperature": s.temperature, "top_p": s.top_p, "seed": s.seed,
                "compress_every": self.compress_every, **{k: v for k, v in sorted(self.extra.items())}}


def prompt_hash(ids: list[int]) -> str:
    import hashlib

    return hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:16]


def output_row(record: dict, settings: InferSettings, prompt_len: int, result, tokenizer, phash: str = "") -> dict:
    text = tokenizer.decode(result.tokens, skip_special_tokens=True)
    from thinkc.eval.answers import extract_answer

    pred = extract_answer(text)
    row = {"id": str(record["id"]), "method": settings.method, "model": settings.model_label,
           "prompt_tokens": prompt_len, "text": text, "pred": pred, "metrics": result.metrics(),
           "settings": settings.fingerprint(), "prompt_hash": phash}
    if record.get("answer") is not None:
        row["gold"] = record["answer"]
    return row


def check_resumable(done: dict[str, dict], settings: InferSettings, output) -> None:
    """One clear error when the output holds rows made with other settings (never mix runs)."""
    want = settings.fingerprint()
    for row in done.values():
        got = row.get("settings")
        if got == want:
            continue
        if not isinstance(got, dict):
            raise ThinkcError(f"{output} holds rows without run settings (not a thinkc infer output of this "
                              "version): choose another --output")
        diff = ", ".join(f"{k}={got.get(k)!r} there vs {want.get(k)!r} now"
                         for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k))
        raise ThinkcError(f"{output} holds rows made with other settings ({diff}): choose another --output "
                          "or delete it")


@dataclass
class RunStats:
    samples: int = 0
    wall_s: float = 0.0
    generated_tokens: int = 0
    engine: dict = field(default_factory=dict)  # the engine's measurements (DecodeEngine.summary)

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict:
        """What `<output>.summary.json` holds for this run (samples decoded now, not resumed ones)."""
        e = self.engine
        forwards = e.get("forwards", 0)
        return {"samples": self.samples, "generated_tokens": self.generated_tokens, "wall_s": round(self.wall_s, 3),
                "tokens_per_s": round(self.tokens_per_s, 2),
                "tasks_per_s": round(self.samples / self.wall_s, 4) if self.wall_s > 0 else 0.0,
                                "max_rows_in_flight": e.get("max_rows_in_flight", 0),
"mean_rows_in_flight": e.get("mean_rows_in_flight", 0.0),
                "busy_rows_in_flight": e.get("busy_rows_in_flight"), "kv_budget": e.get("kv_budget"),
                "kv_peak": e.get("kv_peak", 0), "page_size": e.get("page_size"),
                "preemptions": e.get("preemptions", 0), "cold_start_s": e.get("cold_start_s"),
                "forwards": forwards,
                "forwards_per_token": round(forwards / self.generated_tokens, 4) if self.generated_tokens else 0.0}


def summary_path(output) -> Path:
    p = Path(output)
    return p.with_name(p.name + ".summary.json")


def write_summary(output, stats: RunStats, settings: InferSettings) -> Path:
    """`<output>.summary.json` (atomic): the run's throughput and memory figures beside its settings."""
    from thinkc.io import atomic_write

    path = summary_path(output)
    body = {**stats.summary(), "method": settings.method, "model": settings.model_label,
            "batch_size": settings.batch_size, "compile": settings.compile,
            "pool_attention": stats.engine.get("attention")}
    with atomic_write(path) as f:
        f.write(json.dumps(body, indent=2) + "\n")
    return path

