"""`thinkc bench serve`: the R-KV stress protocol on thinkc's engine. A fixed KV pool, N requests (the
synthetic task's test questions, in each model's prompt layout), at most `rows` in flight; for each
method the tokens/s and tasks/s, rows in flight (over time: a plot), preemptions and peak pool use,
beside two references: the same method with an ample pool (the pool's own overhead) and without a
pool (every row at full capacity, today's engine). Greedy texts must equal the run without a pool:
the table says so per row.

Everything is measured in one process, side by side; the methods' order is rotated per repeat and
medians are reported (the machine is shared). Each method decodes with its own shipped model:
vanilla and the training-free policies with tiny-sft, lightthinker with tiny-lightthinker."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from thinkc.errors import ThinkcError

MODES = ("pool", "ample", "static")  # the budget asked for, a pool nothing waits for, no pool


def _load(method: str, n: int, seed: int, device: str):
    from thinkc.data.synth import synth_splits
    from thinkc.infer.run import eos_ids, prepare

    model, tok, policy, build, label = prepare(method, device=device)
    _, test = synth_splits(1, n, seed=seed)
    prompts = [build(r.to_dict()) for r in test]
    if not all(isinstance(p, list) for p in prompts):
        raise ThinkcError(f"bench serve: {label}'s prompt layout compresses the prompt (not supported here)")
    return model, tok, policy, prompts, eos_ids(tok), label


def _run_once(setup, mode: str, kv_budget: int, rows: int, max_new: int, page_size: int) -> dict:
    from thinkc.infer.loop import decode

    model, tok, policy, prompts, eos, label = setup
    budget = {"pool": kv_budget, "ample": rows * (max(map(len, prompts)) + max_new + 32), "static": None}[mode]
    engines = []
    t0 = time.perf_counter()
    res = decode(model, prompts, policy, max_new_tokens=max_new, eos_ids=eos, batch_size=rows, kv_budget=budget,
                 page_size=page_size, engine_out=engines)
    wall = time.perf_counter() - t0
    s = engines[0].summary()
    tokens = sum(len(r.tokens) for r in res)
    return {"wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall, "tasks_per_s": len(res) / wall,
            "summary": s, "trace": engines[0].meter.trace, "texts": [r.tokens for r in res], "model": label}


def run_serve_bench(methods: list[str], n: int = 96, rows: int = 64, kv_budget: int = 4800, max_new: int = 1024,
                    page_size: int = 16, repeats: int = 1, seed: int = 0, device: str = "cpu",
                    modes: tuple[str, ...] = MODES, progress=None) -> tuple[list[dict], dict]:
    """(table rows, traces by method) for every method x mode; medians over `repeats`."""
    setups = {m: _load(m, n, seed, device) for m in methods}
    runs: dict[tuple, list[dict]] = {}
    order = [(m, mode) for m in methods for mode in modes]
    for rep in range(repeats):
        k = rep % len(order)
        for m, mode in order[k:] + order[:k]:  # rotate the order per repeat
            with torch.no_grad():
                runs.setdefault((m, mode), []).append(_run_once(setups[m], mode, kv_budget, rows, max_new, page_size))
            if progress:
                progress()
    table, traces = [], {}
    for m in methods:
        static = runs.get((m, "static"), [None])[0]
        for mode in modes:
            table.append(_row(m, mode, runs[(m, mode)], static, runs.get((m, "static"))))
        if (m, "pool") in runs:
            traces[m] = runs[(m, "pool")][0]["trace"]
    return table, traces


def _row(method: str, mode: str, rs: list[dict], static: dict | None, static_runs) -> dict:
    s = rs[0]["summary"]
    tps = statistics.median(r["tokens_per_s"] for r in rs)
    row = {"method": method, "model": rs[0]["model"], "mode": mode, "kv_budget": s.get("kv_budget"),
           "tokens/s": round(tps, 1), "tasks/s": round(statistics.median(r["tasks_per_s"] for r in rs), 3),
           "busy rows": s.get("busy_rows_in_flight"), "mean rows": s.get("mean_rows_in_flight"),
           "max rows": s.get("max_rows_in_flight"), "preemptions": s.get("preemptions", 0),
           "kv peak": s.get("kv_peak"), "forwards/token": round(s["forwards"] / max(1, rs[0]["tokens"]), 4),
           "row steps/token": round(s["row_steps"] / max(1, rs[0]["tokens"]), 3)}
    if static is not None:
        row["texts = no pool"] = all(r["texts"] == static["texts"] for r in rs)
        row["vs no pool"] = round(tps / statistics.median(r["tokens_per_s"] for r in static_runs), 3)
    return row


def plot_rows_in_flight(traces: dict, path: Path, kv_budget: int) -> Path:
    """Rows in flight over wall time per method, under the same pool."""
    from thinkc.eval.plots import _pyplot, _save, method_color

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for method, trace in traces.items():
        ax.plot([t for t, _, _ in trace], [n for _, n, _ in trace], label=method, color=method_color(method), lw=1.2)
    ax.set_xlabel("seconds")
    ax.set_ylabel("rows in flight")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.set_title(f"rows in flight under a {kv_budget:,}-token KV pool")
    ax.legend()
    out = _save(fig, path)
    plt.close(fig)
    return out
