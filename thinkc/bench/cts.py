"""CTS scoring throughput and achieved ratio, native vs LLMLingua (and others), in one run.

tokens/s counts thinking tokens of the records divided by the wall time of scoring + selection
(native: both teacher-forced passes and the selection at the target ratio; LLMLingua: its
compress_prompt calls). Model loading is excluded. The achieved ratio is measured with the
reference tokenizer: compressed thinking tokens / original thinking tokens."""
from __future__ import annotations

import time
from typing import Sequence


def run_cts_bench(model: str, records: Sequence[dict], backends: Sequence[str] = ("native", "llmlingua"),
                  device: str = "cpu", batch_size: int = 8, ratio: float = 0.5, window: int | None = 2048) -> list[dict]:
    """`model`: a local folder or "smollm2" (LLMLingua loads it from disk); records: dicts with
    `thinking` and `answer`. One row per backend."""
    from thinkc.bench.common import sync
    from thinkc.cts.backends import load_reference, make_backend
    from thinkc.cts.select import select

    ref_model, tok = load_reference(model, device)

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    before = sum(count(r["thinking"]) for r in records)
    rows = []
    for name in backends:
        backend = make_backend(name, model, model=ref_model, tokenizer=tok, device=device,
                               batch_size=batch_size, window=window)
        sync(device)
        t0 = time.perf_counter()
        if backend.kind == "scores":
            scored = backend.score(records)
            texts = [select(tok, r["thinking"], s.ids, s.scores, ratio).text for r, s in zip(records, scored)]
        else:
            texts = backend.compress(records, ratio)
        sync(device)
        dt = time.perf_counter() - t0
        after = sum(count(t) for t in texts)
        rows.append({"backend": name, "records": len(records), "thinking_tokens": before, "seconds": round(dt, 3),
                     "tokens_per_s": round(before / dt, 1), "target": ratio, "achieved": round(after / before, 4),
                     "miss": round(after / before - ratio, 4)})
        del backend
    return rows


def token_kinds(tokenizer, record: dict, ids) -> list[str | None]:
    """"compute" / "filler" per thinking token of a synthetic record, from meta["thought_kinds"]
    (one kind per blank-line-separated thought); None for whitespace-only tokens (the blank lines
    themselves belong to no thought)."""
    import numpy as np

    from thinkc.cts.select import BOUNDARY, token_spans

    text, kinds = record["thinking"], record["meta"]["thought_kinds"]
    starts = [0] + [m.end() for m in BOUNDARY.finditer(text)]
    if len(starts) != len(kinds):
        raise ValueError(f"record {record.get('id')!r}: {len(starts)} thoughts but {len(kinds)} thought_kinds")
    return [kinds[int(np.searchsorted(starts, s, side="right")) - 1] if text[s:e].strip() else None
            for s, e in token_spans(tokenizer, text, ids)]


def kept_by_kind(tokenizer, record: dict, ids, keep) -> dict[str, list[int]]:
    """{"compute": [kept, total], "filler": [kept, total]} token counts of one synthetic record."""
    out = {"compute": [0, 0], "filler": [0, 0]}
    for kind, k in zip(token_kinds(tokenizer, record, ids), keep):
        if kind is not None:
            out[kind][0] += int(k)
            out[kind][1] += 1
    return out


def kind_totals(tokenizer, records, selections) -> dict[str, list[int]]:
    """Sum of kept_by_kind over records; `selections` yields (ids, keep) per record."""
    tot = {"compute": [0, 0], "filler": [0, 0]}
    for rec, (ids, keep) in zip(records, selections):
        for kind, (k, n) in kept_by_kind(tokenizer, rec, ids, keep).items():
            tot[kind][0] += k
            tot[kind][1] += n
    return tot


def run_filler_bench(model, tokenizer, records: Sequence[dict], ratios=(0.5, 0.6, 0.7),
                     conditional: bool = True, batch_size: int = 8) -> list[dict]:
    """Where the kept tokens fall on the synthetic task: per ratio, the kept share of tokens inside
    computation thoughts vs filler thoughts (CTS should keep computation and drop filler)."""
    from thinkc.cts.scorer import score_records
    from thinkc.cts.select import select

    scored = score_records(model, tokenizer, records, conditional=conditional, batch_size=batch_size)
    rows = []
    for r in ratios:
        tot = kind_totals(tokenizer, records, ((s.ids, select(tokenizer, rec["thinking"], s.ids, s.scores, r).keep)
                                               for rec, s in zip(records, scored)))
        kept = tot["compute"][0] + tot["filler"][0]
        rows.append({"backend": "native" if conditional else "unconditional", "ratio": r, "records": len(records),
                     "compute_kept_share": round(tot["compute"][0] / max(tot["compute"][1], 1), 4),
                     "filler_kept_share": round(tot["filler"][0] / max(tot["filler"][1], 1), 4),
                     "kept_in_compute": round(tot["compute"][0] / max(kept, 1), 4),
                     "compute_token_share": round(tot["compute"][1] / max(tot["compute"][1] + tot["filler"][1], 1), 4)})
    return rows
