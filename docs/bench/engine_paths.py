"""The host-driven fast paths (thinkc/infer/plain.py, gistpath.py) against the general step, on CPU,
with and without a 4,800-token pool: 96 synthetic problems, 64 rows, one thread, order alternating,
mean of 2 runs; tokens checked equal. Run from the repository root: PYTHONPATH=. python docs/bench/engine_paths.py"""
import time, json, torch
torch.set_num_threads(1)
from thinkc.data.synth import synth_splits
from thinkc.infer.run import prepare, eos_ids
from thinkc.infer.engine import DecodeEngine
out = []
for method in ("vanilla", "lightthinker"):
    model, tok, policy, build, label = prepare(method)
    _, test = synth_splits(1, 96, seed=0)
    prompts = [build(r.to_dict()) for r in test]
    for budget in (None, 4800):
        res = {}
        for rep in range(2):
            for plain in ((True, False) if rep == 0 else (False, True)):
                e = DecodeEngine(model, policy, slots=64, max_prompt=max(map(len, prompts)), max_new_tokens=1024,
                                 eos_ids=eos_ids(tok), plain=plain, kv_budget=budget)
                t0 = time.perf_counter()
                with torch.no_grad():
                    r = e.run(prompts)
                dt = time.perf_counter() - t0
                res.setdefault(plain, []).append((sum(len(x.tokens) for x in r) / dt, [x.tokens for x in r]))
        for plain, runs in res.items():
            tps = sorted(t for t, _ in runs)
            out.append({"method": method, "kv_budget": budget, "host_path": plain, "tokens_per_s": round(sum(tps) / 2, 1),
                        "same_tokens": runs[0][1] == res[not plain][0][1]})
            print(out[-1], flush=True)
json.dump(out, open("docs/bench/engine-paths-cpu.json", "w"), indent=1)
