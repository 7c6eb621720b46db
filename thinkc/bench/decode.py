"""Batched decode throughput and peak KV of the cache policies, side by side in one run.

Prompts are random token ids (same for every method), decoding is greedy with no EOS so every row
generates exactly `max_new_tokens`. LightThinker compressions are forced every `compress_every`
tokens with gist ids taken from the model's existing vocabulary: on a model not trained for gists
(SmolLM2) this measures the mechanics (extra gist-block tokens, compaction, smaller cache), not
answer quality."""
from __future__ import annotations

import time

import torch

from thinkc.bench.common import sync
from thinkc.gist.rule import GistFlags
from thinkc.infer.policies import GistSpec, make_policy
from thinkc.infer.sampling import SamplingConfig

RANDOM_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, vocab_size=152064)  # Qwen2.5-7B shapes


def _load(model, device: str):
    if not isinstance(model, str):
        return model, str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
    if model == "random-7b":
        from thinkc.models.tiny import tiny_model

        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        return tiny_model("qwen2", **RANDOM_7B, dtype=dtype).to(device), model
    if model in ("tiny", "tiny-random"):
        from thinkc.models.tiny import tiny_model

        return tiny_model("qwen2").to(device), model
    from thinkc.models.loading import load_model

    return load_model(model, device=device), model


def bench_spec(vocab_size: int, n_cache: int = 9) -> GistSpec:
    """Gist ids from the top of the existing vocabulary (forced compressions only)."""
    top = vocab_size - 1
    return GistSpec(cache_ids=tuple(range(top - n_cache, top)), output_id=top, trigger_id=top - n_cache - 1,
                    level="thought", flags=GistFlags())


def run_decode_bench(model="smollm2", methods=("vanilla", "lightthinker", "h2o"), batch_sizes=(1, 8),
                     max_new_tokens: int = 256, compress_every: int = 64, device: str = "cpu",
                     prompt_len: int = 128, h2o_budget: int | None = None, n_cache: int = 9,
                     seed: int = 0) -> list[dict]:
    """One row per (method, batch size): tokens/s (generated tokens of all rows / wall seconds),
    peak KV (largest cache length of any row, transient gist block included), final KV, compressions.
    `h2o_budget` defaults to half of prompt + generated tokens so that eviction really happens."""
    from thinkc.infer.loop import decode

    model, label = _load(model, device)
    vocab = model.get_input_embeddings().weight.shape[0]
    spec = bench_spec(vocab, n_cache)
    budget = h2o_budget or (prompt_len + max_new_tokens) // 2
    g = torch.Generator().manual_seed(seed)
    rows = []
    for bs in batch_sizes:
        prompts = torch.randint(0, spec.trigger_id, (bs, prompt_len), generator=g).tolist()
        for method in methods:
            policy = make_policy(method, spec=spec, budget=budget) if method != "sepllm" else None
            if policy is None:
                raise ValueError("sepllm needs a tokenizer; bench it through `thinkc infer`")
            force = (lambda idx, n: n % compress_every == 0) if method in ("lightthinker", "anllm") else None
            decode(model, [p[:8] for p in prompts], policy, max_new_tokens=4, force_compress=force)  # warm-up
            sync(device)
            t0 = time.perf_counter()
            res = decode(model, prompts, policy, max_new_tokens=max_new_tokens, force_compress=force,
                         sampling=SamplingConfig())
            sync(device)
            wall = time.perf_counter() - t0
            n_tok = sum(len(r.tokens) for r in res)
            rows.append({"model": label, "method": method, "batch": bs, "prompt_len": prompt_len,
                         "new_tokens": max_new_tokens, "tokens_per_s": n_tok / wall, "wall_s": wall,
                         "peak_kv": max(r.peak_kv for r in res), "final_kv": max(r.kv_trace[-1] for r in res),
                         "compressions": max(r.compressions for r in res),
                         "budget": budget if method == "h2o" else None})
    return rows
