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
