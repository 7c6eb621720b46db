"""thinkc side of the kvpress cross-check (issue 24): thinkc's SnapKV / StreamingLLM / H2O kept keys
against kvpress 0.5.5's, on the tiny random Llamas and forced tokens of kvpress_dump.py.

    OMP_NUM_THREADS=1 /work/kvenv/bin/python docs/bench/kvpress_dump.py   # kvpress venv: the "kvpress" part
    OMP_NUM_THREADS=1 .venv/bin/python docs/bench/kvpress_check.py        # thinkc venv: "thinkc" + "results"

It rebuilds the same models (and refuses to go on if the weight sha256 or the prefill logits differ),
decodes each case with thinkc's DecodeEngine and the policy from thinkc.infer.policies, forcing the
same continuation (the engine's token choice is replaced, nothing else), and records the positions
each keep() leaves. Then, at every kvpress compression (per layer and KV head), it compares thinkc's
one set per row with kvpress's set: exact match and Jaccard. `aggregate` re-selects from kvpress's
own scores summed over layers and KV heads (H2O: times the queries each key's mean was taken over,
i.e. the accumulated sum) with thinkc's rule, at the first compression: where the per-head
definitions coincide up to that aggregation this must equal thinkc exactly. kvpress-check.md
names every difference."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from kvpress_dump import (CASES, MODELS, OUT, build_model, case_tokens, reference_logits,  # noqa: E402
                         weight_sha, write_json)


def make_policy(case):
    """thinkc's policy with the case's parameters, its keep() traced (clock -> kept positions)."""
    from thinkc.infer.policies import H2OPolicy, SnapKVPolicy, StreamingLLMPolicy
    from thinkc.infer.policies.windowed import row_clock

    if case["policy"] == "snapkv":
        base, args = SnapKVPolicy, (case["budget"], case["window"], case["every"], case["kernel"])
    elif case["policy"] == "streamingllm":
        base, args = StreamingLLMPolicy, (case["budget"], case["sinks"])
    else:
        base, args = H2OPolicy, (case["budget"], case["window"])

    class Traced(base):
        def __init__(self, *a):
            super().__init__(*a)
            self.kept = {}  # clock -> sorted kept positions of row 0, only where keys were dropped

        def keep(self, slots):
            keep = super().keep(slots)
            valid = slots.valid[0]
            kept = keep[0] & valid
            if int(kept.sum()) < int(valid.sum()):
                self.kept[int(row_clock(slots)[0])] = sorted(slots.pos[0][kept].long().tolist())
            return keep

    return Traced(*args)


def run_thinkc(case, toks):
    """Decode the prompt with thinkc, the continuation forced token by token; kept sets by clock."""
    from thinkc.infer.engine import DecodeEngine

    P, N = case["P"], case["N"]
    forced = toks[P:] + [3]  # the last choice ends the row; it is never fed (kvpress feeds N tokens too)
    model = build_model(case["model"])
    policy = make_policy(case)
    eng = DecodeEngine(model, policy, slots=1, max_prompt=P, max_new_tokens=N + 1)
    eng._choose = lambda logits, live: torch.tensor([forced[int(eng.rows.n_gen[0])]], device=logits.device)
    with torch.no_grad():
        res = eng.run([toks[:P]])[0]
    assert res.tokens == forced, "the forced continuation was not followed"
    return policy.kept


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b)


def aggregate_keep(case, events) -> list[int] | None:
    """thinkc's selection rule applied to kvpress's scores at its first compression, summed over layers
    and KV heads (kvpress's per-KV-head score is a mean over its query heads: same ranking as a sum)."""
    if case["policy"] == "streamingllm" or not events or "score" not in events[0]:
        return None  # StreamingLLM is position-only: its sets are compared directly
    first = [e for e in events if e["clock"] == events[0]["clock"]]
    positions = first[0]["positions"][0]
    if any(e["positions"][h] != positions for e in first for h in range(len(e["positions"]))):
        return None  # cache orders differ between layers/heads: no position-wise sum
    total = torch.zeros(len(positions), dtype=torch.float64)
    for e in first:
        total += torch.tensor(e["score"], dtype=torch.float64).sum(0)
    n = len(positions)
    if case["policy"] == "h2o":  # kvpress divides key j's summed attention by the n - j queries seeing it
        total *= torch.arange(n, 0, -1, dtype=torch.float64)
        recent = list(range(n - case["window"], n)) if case["window"] else []
        n_top = case["budget"] - 1 - len(recent)
    else:  # snapkv: the window is kvpress's max+1 pad; thinkc keeps it outright
        recent = list(range(n - case["window"], n))
        n_top = case["budget"] - case["window"]
    cand = [i for i in range(n) if i not in recent]
    top = sorted(cand, key=lambda i: (-float(total[i]), i))[:n_top]
    return sorted(positions[i] for i in top + recent)


def compare(case, kv_events, kept) -> dict:
    """Per (event, layer, KV head): thinkc's set at that clock vs kvpress's; summaries, the first
    compression apart (the only one where both start from the same cache when the sets differ), and
    kvpress's own agreement between its (layer, head) sets there, for scale."""
    rows = []  # [clock, layer, head, jaccard]: 1.0 = exact
    for e in kv_events:
        mine = kept.get(e["clock"])
        for h, theirs in enumerate(e["kept"]):
            rows.append([e["clock"], e["layer"], h, round(jaccard(mine, theirs), 4) if mine is not None else 0.0])
    c0 = kv_events[0]["clock"] if kv_events else None
    first = [r for r in rows if r[0] == c0]
    sets0 = [k for e in kv_events if e["clock"] == c0 for k in e["kept"]]
    pairs = [jaccard(a, b) for i, a in enumerate(sets0) for b in sets0[i + 1:]]
    agg = aggregate_keep(case, kv_events)
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None
    return dict(name=case["name"], policy=case["policy"], model=case["model"], n_sets=len(rows),
                exact=mean([float(r[3] == 1.0) for r in rows]), jaccard=mean([r[3] for r in rows]),
                min_jaccard=min((r[3] for r in rows), default=None),
                first_exact=mean([float(r[3] == 1.0) for r in first]), first_jaccard=mean([r[3] for r in first]),
                kvpress_inter_head_jaccard=mean(pairs),
                aggregate_exact=None if agg is None else agg == kept.get(c0),
                thinkc_clocks=sorted(kept), kvpress_clocks=sorted({e["clock"] for e in kv_events}), sets=rows)


def check_models(kv) -> None:
    """Same weights and the same function in both venvs, or stop."""
    for key, m in kv["models"].items():
        model = build_model(key)
        assert m["config"] == MODELS[key], f"model {key}: config differs from the dump's"
        assert weight_sha(model) == m["sha256"], f"model {key}: weights differ from kvpress's venv"
        got = torch.tensor(reference_logits(key, m["probe"]))
        diff = float((got - torch.tensor(m["logits"])).abs().max())
        assert diff < 1e-4, f"model {key}: prefill logits differ by {diff}"
        m["thinkc_logit_max_abs_diff"] = diff


def main() -> None:
    import transformers

    data = json.loads(OUT.read_text())
    kv = data["kvpress"]
    check_models(kv)
    by_name = {r["case"]["name"]: r for r in kv["runs"]}
    results, thinkc = [], {}
    for case in CASES:
        run = by_name[case["name"]]
        assert run["case"] == case and run["tokens"] == case_tokens(case), f"{case['name']}: rerun kvpress_dump.py"
        kept = run_thinkc(case, run["tokens"])
        thinkc[case["name"]] = {str(k): v for k, v in sorted(kept.items())}
        results.append(compare(case, run["events"], kept))
    data["thinkc"] = dict(meta=dict(transformers=transformers.__version__, torch=torch.__version__), kept=thinkc)
    data["results"] = results
    write_json(data)
    head = ("case", "sets", "exact", "jacc", "min", "1st ex", "1st J", "heads", "agg")
    print(f"{head[0]:28} " + " ".join(f"{h:>6}" for h in head[1:]))
    for r in results:
        print(f"{r['name']:28} {r['n_sets']:6} {r['exact']:6} {r['jaccard']:6} {r['min_jaccard']:6} "
              f"{r['first_exact']:6} {r['first_jaccard']:6} {str(r['kvpress_inter_head_jaccard']):>6} "
              f"{str(r['aggregate_exact']):>5}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    main()
