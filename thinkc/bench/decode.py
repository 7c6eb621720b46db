"""Decode throughput side by side in one run (`thinkc bench decode`): thinkc's engine with each
cache policy (eager, and with the compiled / CUDA-graph step), HF `generate` (dynamic and static
cache), the raw forward-loop floor, and the bandwidth roofline on CUDA. Same model, same prompts,
greedy, no EOS (every row generates exactly `max_new_tokens`); each entry is warmed up with the
exact shapes it is timed with, the entry order rotates between repeats, medians are reported.
`eos`: rows stop at the model's EOS instead (up to `max_new_tokens`; thinkc entries only, tokens/s
counts the tokens each row generated); `vanilla_model` adds vanilla decoding with another checkpoint
on the same task prompts (in its own prompt layout), e.g. tiny-sft beside tiny-lightthinker.

Prompts: "random" token ids of `prompt_len` (LightThinker compressions forced every
`compress_every` tokens with gist ids from the top of the vocabulary: on a model not trained for
gists this measures the mechanics), or "synth": the synthetic task's test questions in the
model's prompt layout (a trained gist model then compresses where it emits `<w>`)."""
from __future__ import annotations

import statistics
import time

import torch

from thinkc.bench.common import sync
from thinkc.bench.decode_baselines import device_bandwidth, forward_loop, hf_generate, roofline_tokens_per_s
from thinkc.gist.rule import GistFlags
from thinkc.infer.policies import GistSpec, make_policy

RANDOM_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, vocab_size=152064)  # Qwen2.5-7B shapes
BASELINES = ("hf-dynamic", "hf-static", "forward-loop")


def _load(model, device: str):
    if not isinstance(model, str):
        return model, str(getattr(model.config, "_name_or_path", "") or type(model).__name__), None
    if model in ("random-7b", "tiny", "tiny-random"):
        from thinkc.models.tiny import tiny_model

        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        kw = RANDOM_7B if model == "random-7b" else {}
        return tiny_model("qwen2", **kw, dtype=dtype).to(device), model, None
    from thinkc.models.loading import load_model, load_tokenizer

    return load_model(model, device=device), model, load_tokenizer(model)


def bench_spec(vocab_size: int, n_cache: int = 9) -> GistSpec:
    """Gist ids from the top of the existing vocabulary (forced compressions only)."""
    top = vocab_size - 1
    return GistSpec(cache_ids=tuple(range(top - n_cache, top)), output_id=top, trigger_id=top - n_cache - 1,
                    level="thought", flags=GistFlags())


def _gist_spec(model_name, tokenizer, vocab: int, n_cache: int) -> tuple[GistSpec, bool]:
    """The model's own gist spec when it has one (trained: no forcing needed), else bench ids."""
    if tokenizer is not None and isinstance(model_name, str):
        from thinkc.infer.run import resolve_gist_config
        from thinkc.models.loading import resolve_model

        cfg = resolve_gist_config(resolve_model(model_name), None)
        if cfg is not None and cfg.compresses:
            return GistSpec.from_config(cfg, tokenizer), True
    return bench_spec(vocab, n_cache), False


def _prompts(kind: str, n: int, prompt_len: int, tokenizer, model_name, top: int, seed: int) -> list[list[int]]:
    if kind == "random":
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, top, (n, prompt_len), generator=g).tolist()
    if tokenizer is None:
        raise ValueError("--prompts synth needs a model with a tokenizer (a checkpoint, not a random model)")
    from thinkc.data.synth import synth_splits
    from thinkc.gist.config import GistConfig
    from thinkc.gist.layout import build_prompt
    from thinkc.infer.run import resolve_gist_config
    from thinkc.models.loading import resolve_model

    cfg = resolve_gist_config(resolve_model(model_name), None) or GistConfig(mode="normal")
    _, test = synth_splits(1, n, seed=seed)
    return [build_prompt(r.to_dict(), tokenizer, cfg) for r in test]


def _thinkc_runner(model, prompts, method, spec, trained, new, compress_every, budget, compile, eos=(),
                   kv_budget=None):
    from thinkc.infer.loop import decode

    policy = make_policy(method, spec=spec, budget=budget)
    force = compress_every if (method in ("lightthinker", "anllm") and not trained and compress_every) else None
    page = 128 if next(model.parameters()).device.type == "cuda" else 16

    def run():
        res = decode(model, prompts, policy, max_new_tokens=new, force_compress=force, compile=compile, eos_ids=eos,
                     kv_budget=kv_budget, page_size=page)
        return (sum(len(r.tokens) for r in res), max(r.peak_kv for r in res), max(r.kv_trace[-1] for r in res),
                max(r.compressions for r in res))
    return run


def _entries(model, prompts, methods, baselines, spec, trained, new, compress_every, budget, compile_too, eos=(),
             kv_budget=None):
    entries = {}
    for m in methods:
        entries[f"thinkc {m}"] = _thinkc_runner(model, prompts, m, spec, trained, new, compress_every, budget, False,
                                                eos)
        if compile_too and m != "h2o":
            entries[f"thinkc {m} (graphs)"] = _thinkc_runner(model, prompts, m, spec, trained, new, compress_every,
                                                            budget, True)
        if kv_budget:  # the KV pool (thinkc.infer.pool): attention reads the pages in place
            entries[f"thinkc {m} pool"] = _thinkc_runner(model, prompts, m, spec, trained, new, compress_every,
                                                         budget, False, eos, kv_budget)
            if compile_too and m != "h2o":
                entries[f"thinkc {m} pool (graphs)"] = _thinkc_runner(model, prompts, m, spec, trained, new,
                                                                      compress_every, budget, True, eos, kv_budget)
    for b in baselines:
        if b == "forward-loop" and len({len(p) for p in prompts}) != 1:
            continue
        fn = {"hf-dynamic": lambda: hf_generate(model, prompts, new),
              "hf-static": lambda: hf_generate(model, prompts, new, static=True),
              "forward-loop": lambda: forward_loop(model, prompts, new)}[b]
        entries[b] = (lambda f=fn: (*f(), None, 0))
    return entries


def run_decode_bench(model="smollm2", methods=("vanilla", "lightthinker", "h2o"), batch_sizes=(1, 8),
                     max_new_tokens: int = 256, compress_every: int = 64, device: str = "cpu",
                     prompt_len: int = 128, h2o_budget: int | None = None, n_cache: int = 9, seed: int = 0,
                     baselines=None, prompts: str = "random", repeats: int = 1, compile: bool | None = None,
                     eos: bool = False, vanilla_model: str | None = None,
                     kv_budget: int | None = None) -> list[dict]:
    """One row per (entry, batch size): tokens/s (generated tokens of all rows / wall seconds, median
    over repeats), peak KV (largest cache length of any row, transient gist block included), final
    KV, compressions, and on CUDA the share of the bandwidth roofline. `h2o_budget` defaults to half
    of prompt + generated tokens so that eviction really happens. `compile` (default: on CUDA) adds
    the compiled step of each thinkc method; `baselines` default: all on CUDA, hf-dynamic and the
    forward loop on CPU (static-cache generate is only compiled by transformers on CUDA). `eos`,
    `vanilla_model`: see the module docstring. `kv_budget` adds each method on the KV pool (eager and,
    with `compile`, graphs). `cold_s` is the first (untimed) run: compile and capture included."""
    if (eos or vanilla_model) and prompts != "synth":
        raise ValueError("eos and vanilla_model need the task's prompts (prompts='synth')")
    from thinkc.infer.run import eos_ids

    model_obj, label, tok = _load(model, device)
    vocab = model_obj.get_input_embeddings().weight.shape[0]
    spec, trained = _gist_spec(model, tok, vocab, n_cache)
    budget = h2o_budget or (prompt_len + max_new_tokens) // 2
    cuda = device.startswith("cuda")
    baselines = tuple(BASELINES if cuda else ("hf-dynamic", "forward-loop")) if baselines is None else tuple(baselines)
    baselines = () if eos else baselines
    other = _load(vanilla_model, device) if vanilla_model else None
    compile_too = cuda if compile is None else compile
    bandwidth = device_bandwidth(device)
    rows = []
    for bs in batch_sizes:
        ps = _prompts(prompts, bs, prompt_len, tok, model, spec.trigger_id or vocab - 16, seed)
        entries = _entries(model_obj, ps, methods, baselines, spec, trained, max_new_tokens, compress_every,
                           budget, compile_too, eos_ids(tok) if eos else (), kv_budget)
        if other is not None:
            ops = _prompts(prompts, bs, prompt_len, other[2], vanilla_model, 0, seed)
            entries[f"thinkc vanilla ({vanilla_model})"] = _thinkc_runner(
                other[0], ops, "vanilla", None, False, max_new_tokens, 0, None, False, eos_ids(other[2]) if eos else ())
        rows += _time_entries(entries, repeats, device, dict(model=label, batch=bs, prompt_len=max(map(len, ps)),
                                                             new_tokens=max_new_tokens, prompts=prompts, eos=eos))
        roof = roofline_tokens_per_s(model_obj, bs, bandwidth)
        for r in rows[-len(entries):]:
            r["roofline_share"] = round(r["tokens_per_s"] / roof, 3) if roof else None
            r["budget"] = budget if r["method"] == "thinkc h2o" else None
        if roof:
            rows.append({**rows[-1], "method": "roofline (weights / bandwidth)", "tokens_per_s": roof, "wall_s": None,
                         "peak_kv": None, "final_kv": None, "compressions": None, "roofline_share": 1.0,
                         "budget": None})
    return rows


def _time_entries(entries: dict, repeats: int, device: str, common: dict) -> list[dict]:
    names = list(entries)
    cold = {}
    for name in names:  # warm-up with the exact shapes timed (compiled entries capture here): the cold start
        t0 = time.perf_counter()
        entries[name]()
        sync(device)
        cold[name] = time.perf_counter() - t0
    times = {n: [] for n in names}
    out = {}
    for rep in range(max(1, repeats)):
        k = rep % len(names)
        for name in names[k:] + names[:k]:  # rotate the order
            t0 = time.perf_counter()
            out[name] = entries[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    rows = []
    for name in names:
        n_tok, peak, final, comp = out[name]
        wall = statistics.median(times[name])
        rows.append({**common, "method": name, "tokens": n_tok, "tokens_per_s": n_tok / wall, "wall_s": wall, "peak_kv": peak,
                     "final_kv": final, "compressions": comp, "cold_s": round(cold[name], 3)})
    return rows


def run_batching_bench(model="tiny-sft", n: int = 200, batch_size: int = 8, max_new_tokens: int = 512,
                       method: str = "vanilla", device: str = "cpu", seed: int = 0, repeats: int = 1) -> list[dict]:
    """`thinkc infer`'s scheduling on the synthetic test problems, with EOS (ragged lengths): fixed
    batches (each batch decoded until its longest row ends, the old loop) vs continuous batching
    (a finished row's slot takes the next problem at once). Both give the same tokens (checked).
    Medians over `repeats`, the order alternating. `fixed_slot_use`: generated tokens / the slot-steps
    fixed batches pay (each batch runs as long as its longest row): the share of the fixed schedule's
    work that produces tokens, so 1 - fixed_slot_use bounds what continuous batching can save."""
    from thinkc.infer.loop import decode
    from thinkc.infer.run import eos_ids

    model_obj, label, tok = _load(model, device)
    spec, _ = _gist_spec(model, tok, model_obj.get_input_embeddings().weight.shape[0], 9)
    prompts = _prompts("synth", n, 0, tok, model, 0, seed)
    policy = make_policy(method, spec=spec)
    kw = dict(max_new_tokens=max_new_tokens, eos_ids=eos_ids(tok))

    def fixed():
        out = []
        for i in range(0, n, batch_size):
            out += decode(model_obj, prompts[i:i + batch_size], policy, sample_indices=list(range(i, min(n, i + batch_size))), **kw)
        return out

    def continuous():
        return decode(model_obj, prompts, policy, batch_size=batch_size, **kw)

    decode(model_obj, prompts[:batch_size], policy, max_new_tokens=4)  # warm-up
    fns = {"fixed batches": fixed, "continuous batching": continuous}
    times, out = {k: [] for k in fns}, {}
    for rep in range(max(1, repeats)):
        names = list(fns)[rep % 2:] + list(fns)[:rep % 2]  # the order alternates between repeats
        for name in names:
            t0 = time.perf_counter()
            out[name] = fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    tokens = {name: [r.tokens for r in res] for name, res in out.items()}
    lens = [len(t) for t in tokens["continuous batching"]]
    # the slot-steps fixed batches pay: every batch runs until its longest row ends
    fixed_steps = sum(max(lens[i:i + batch_size]) * len(lens[i:i + batch_size]) for i in range(0, n, batch_size))
    rows = []
    for name in fns:
        wall = statistics.median(times[name])
        rows.append({"model": label, "method": method, "samples": n, "slots": batch_size, "schedule": name,
                     "wall_s": wall, "tokens": sum(lens), "tokens_per_s": sum(lens) / wall,
                     "mean_tokens": round(sum(lens) / n, 1), "max_tokens": max(lens),
                     "stopped_by_eos": sum(r.stopped_by_eos for r in out[name]),
                     "fixed_slot_use": round(sum(lens) / fixed_steps, 3),
                     "same_tokens": tokens["fixed batches"] == tokens["continuous batching"]})
    for r in rows:
        r["time_vs_fixed"] = round(r["wall_s"] / rows[0]["wall_s"], 3)
    return rows
