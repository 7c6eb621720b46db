"""kvpress side of the thinkc/kvpress cross-check (issue 24): which key positions kvpress keeps.

Run under kvpress's own venv (kvpress 0.5.5 pins transformers<5.3, thinkc needs >=5.17):

    OMP_NUM_THREADS=1 /work/kvenv/bin/python docs/bench/kvpress_dump.py     # writes the "kvpress" part
    OMP_NUM_THREADS=1 .venv/bin/python docs/bench/kvpress_check.py          # adds thinkc + comparison

Both scripts build the same tiny random Llama from `MODELS` (weights drawn from a seeded torch
generator in sorted parameter order, not from transformers' initialisers, so both transformers
versions get bit-identical weights; the sha256 and prefill logits are stored and compared) and feed
the same prompt and forced continuation (`tokens`), so no greedy divergence can occur. Here every
press is traced: each compression's kept keys are matched back to the keys before it (gather copies
rows exactly), giving absolute positions per layer and KV head. The module imports kvpress only in
`main`, so kvpress_check.py can import CASES / build_model from it in thinkc's venv."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import types
from pathlib import Path

import torch

OUT = Path(__file__).with_name("kvpress-check.json")
VOCAB = 64
# A: one layer, one KV head (two query heads share it): per-layer/per-head selection = one set per row.
# C: one layer, one query head: no head aggregation at all (isolates the pooling order).
# B: two layers, two KV heads, four query heads: thinkc's shared set vs kvpress's 4 (layer, head) sets.
MODELS = {"A": dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, num_key_value_heads=1),
          "C": dict(num_hidden_layers=1, hidden_size=16, num_attention_heads=1, num_key_value_heads=1),
          "B": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2)}
# policy, model, prompt length, forced continuation length, parameters (thinkc names)
CASES = [
    dict(name="snapkv_w1_k1_A", policy="snapkv", model="A", P=16, N=40, budget=12, window=1, kernel=1, every=8),
    dict(name="snapkv_w4_k1_A", policy="snapkv", model="A", P=16, N=40, budget=12, window=4, kernel=1, every=8),
    dict(name="snapkv_w4_k1_A_ropefix", policy="snapkv", model="A", P=16, N=40, budget=12, window=4, kernel=1,
         every=8, rope_fix=True),
    dict(name="snapkv_w1_k7_A", policy="snapkv", model="A", P=16, N=40, budget=12, window=1, kernel=7, every=8),
    dict(name="snapkv_w1_k7_A_orderfix", policy="snapkv", model="A", P=16, N=40, budget=12, window=1, kernel=7,
         every=8, order_fix=True),
    dict(name="snapkv_w1_k1_B", policy="snapkv", model="B", P=16, N=40, budget=12, window=1, kernel=1, every=8),
    dict(name="snapkv_w4_k7_B", policy="snapkv", model="B", P=16, N=40, budget=12, window=4, kernel=7, every=8),
    dict(name="snapkv_w4_k7_B_fixed", policy="snapkv", model="B", P=16, N=40, budget=12, window=4, kernel=7,
         every=8, rope_fix=True, order_fix=True),
    dict(name="snapkv_w4_k7_C", policy="snapkv", model="C", P=16, N=40, budget=12, window=4, kernel=7, every=8),
    dict(name="snapkv_w4_k7_C_fixed", policy="snapkv", model="C", P=16, N=40, budget=12, window=4, kernel=7,
         every=8, rope_fix=True, order_fix=True, max_pool=True, tie_fix=True),
    dict(name="snapkv_w4_k7_C_noties", policy="snapkv", model="C", P=16, N=40, budget=12, window=4, kernel=7,
         every=8, rope_fix=True, order_fix=True, max_pool=True, seed="snapkv_w4_k7_C_fixed"),
    dict(name="streaming_decode_B_orderfix", policy="streamingllm", model="B", P=8, N=40, budget=16, sinks=4,
         order_fix=True),
    dict(name="streaming_decode_B", policy="streamingllm", model="B", P=8, N=40, budget=16, sinks=4),
    dict(name="streaming_prefill_B", policy="streamingllm", model="B", P=32, N=1, budget=16, sinks=4),
    dict(name="h2o_prefill_A", policy="h2o", model="A", P=32, N=1, budget=16, window=0),
    dict(name="h2o_prefill_B", policy="h2o", model="B", P=32, N=1, budget=16, window=0),
    dict(name="h2o_prefill_recent_B", policy="h2o", model="B", P=32, N=1, budget=16, window=8),
]


def build_model(key: str, attn: str = "sdpa"):
    """The tiny Llama `key` with seeded weights: embeddings N(0, 1), matrices N(0, 1/fan_in) (q/k x3 so
    attention is peaked, not near-uniform: fewer near-ties), norm weights 1 + N(0, 0.1)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    kw = dict(vocab_size=VOCAB, intermediate_size=2 * MODELS[key]["hidden_size"], max_position_embeddings=256,
              rope_theta=10000.0, tie_word_embeddings=False, **MODELS[key])
    cfg = LlamaConfig(**kw)
    cfg._attn_implementation = attn
    model = LlamaForCausalLM(cfg).float().eval()
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim == 1:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif "embed" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                gain = 3.0 if ("q_proj" in name or "k_proj" in name) else 1.0
                p.copy_(gain * torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
    return model


def weight_sha(model) -> str:
    """sha256 over the float32 bytes of every parameter, sorted by name."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def case_tokens(case) -> list[int]:
    """Prompt (first P) then the forced continuation (N more), seeded by the case name (or its `seed`)."""
    seed = case.get("seed", case["name"])
    g = torch.Generator().manual_seed(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    return torch.randint(3, VOCAB, (case["P"] + case["N"],), generator=g).tolist()


def make_press(case):
    """The kvpress press with the case's thinkc parameters mapped onto it (mapping: kvpress-check.md)."""
    from kvpress import DecodingPress, ObservedAttentionPress, SnapKVPress, StreamingLLMPress

    if case["policy"] == "snapkv":  # decode-time: every `every` decode steps down to `budget` keys
        base = SnapKVPress(window_size=case["window"], kernel_size=case["kernel"])
        return DecodingPress(base_press=base, compression_interval=case["every"], target_size=case["budget"])
    keep = case["budget"] - 1  # thinkc's H2O / StreamingLLM leave budget - 1 keys after every step
    if case["policy"] == "streamingllm" and case["N"] > 1:  # every decode step, as thinkc's StreamingLLM
        return DecodingPress(base_press=StreamingLLMPress(n_sink=case["sinks"]), compression_interval=1,
                             target_size=keep)
    ratio = 1 - keep / case["P"]  # prefill: n_kept = int(P * (1 - ratio)) = budget - 1 (exact in binary here)
    if case["policy"] == "streamingllm":
        return StreamingLLMPress(compression_ratio=ratio, n_sink=case["sinks"])
    return ObservedAttentionPress(compression_ratio=ratio)


class Tracer:
    """Absolute positions of the cached keys per layer and KV head, updated at every compression by
    matching the kept key rows to the rows before it. `events`: one dict per (layer, compression).
    Optional fixes (case flags) undo one kvpress decode-time behaviour each, to attribute differences:
    rope_fix gives the window queries the RoPE of their own positions (kvpress passes the current step's
    only), order_fix re-sorts kept keys by position (kvpress leaves them in top-k order), tie_fix breaks
    equal scores towards the older entry (thinkc's rule)."""

    def __init__(self, press, scorer, fixes: dict):
        self.press, self.pos, self.events, self.last_score, self.now = press, {}, [], None, 0
        self.rope_fix, self.order_fix, self.tie_fix = (bool(fixes.get(k)) for k in ("rope_fix", "order_fix",
                                                                                      "tie_fix"))
        orig = press.compress
        press.compress = lambda *a: self._compress(orig, *a)
        orig_score = scorer.score
        scorer.score = lambda *a, **k: self._score(orig_score, *a, **k)

    def _score(self, orig, *a, **k):
        score = orig(*a, **k)
        if self.tie_fix:  # equal scores: the older cache entry first (torch.topk's order among ties is unspecified)
            score = score - 1e-7 * torch.arange(score.shape[-1], dtype=score.dtype)
        self.last_score = score
        return score

    def _compress(self, orig, module, hidden, keys, values, attn, kwargs):
        self.last_score = None
        layer, now = module.layer_idx, self.now  # cache_position follows the compressed length: not a clock
        rope_len = int(kwargs["position_embeddings"][0].shape[-2])  # positions the layer's RoPE covers
        if self.rope_fix and rope_len != hidden.shape[1]:  # RoPE of the buffered queries' own positions
            ids = torch.arange(now - hidden.shape[1], now)[None]
            kwargs = dict(kwargs, position_embeddings=module.rotary_emb(hidden, ids))
        new_k, new_v = orig(module, hidden, keys, values, attn, kwargs)
        B, H, K, _ = keys.shape
        old = self.pos.get(layer, torch.empty(B, H, 0, dtype=torch.long))
        pos = torch.cat([old, torch.arange(now - (K - old.shape[2]), now).expand(B, H, -1)], 2)
        if new_k.shape[2] == K:
            self.pos[layer] = pos
            return new_k, new_v
        eq = (new_k[:, :, :, None, :] == keys[:, :, None, :, :]).all(-1)  # [B, H, kept, K]
        assert bool((eq.sum(-1) == 1).all()), "a kept key matches no or several old keys"
        idx = eq.float().argmax(-1)
        if self.order_fix:  # put the kept keys back in position order
            idx = idx.sort(-1).values
            new_k = keys.gather(2, idx[..., None].expand_as(new_k))
            new_v = values.gather(2, idx[..., None].expand_as(new_v))
        self.pos[layer] = pos.gather(2, idx)
        self._record(layer, now, pos, int(hidden.shape[1]), rope_len)
        return new_k, new_v

    def _record(self, layer, now, pos, queries, rope_len):
        """One event: kept positions per KV head (row 0); the cache order at the first two compressions;
        kvpress's score per KV head over `positions` at the first one."""
        ev = dict(layer=layer, clock=now, k_len=int(pos.shape[2]), queries=queries, rope_len=rope_len,
                  kept=[sorted(p) for p in self.pos[layer][0].tolist()])
        if len({e["clock"] for e in self.events} | {now}) <= 2:
            ev["cache_order"] = self.pos[layer][0].tolist()
        if self.last_score is not None and all(e["clock"] == now for e in self.events):
            ev["positions"], ev["score"] = pos[0].tolist(), self.last_score[0].tolist()
        self.events.append(ev)


@contextlib.contextmanager
def max_pooling(on: bool):
    """With `on`, SnapKVPress's pooling call is max pooling (thinkc's and SnapKV's 'maxpool'), else as is."""
    import kvpress.presses.snapkv_press as mod

    saved = mod.F
    if on:
        mod.F = types.SimpleNamespace(**{k: getattr(saved, k) for k in dir(saved) if not k.startswith("__")})
        mod.F.avg_pool1d = saved.max_pool1d
    try:
        yield
    finally:
        mod.F = saved


def run_case(case) -> dict:
    """Prefill the prompt, then feed the forced continuation one token per forward under the traced
    press, with explicit position_ids (the cache shrinks, so its length is no position)."""
    from transformers import DynamicCache

    eager = case["policy"] == "h2o"  # ObservedAttentionPress reads the eager attention weights
    model = build_model(case["model"], "eager" if eager else "sdpa")
    toks = case_tokens(case)
    press = make_press(case)
    tracer = Tracer(press, getattr(press, "base_press", press), case)
    P = case["P"]
    with torch.no_grad(), max_pooling(case.get("max_pool", False)), press(model):
        cache = DynamicCache(config=model.config)
        tracer.now = P
        model(torch.tensor([toks[:P]]), past_key_values=cache, use_cache=True)
        for i, t in enumerate(toks[P:]):  # absolute RoPE positions, as kvpress's pipeline passes them
            tracer.now = P + i + 1
            model(torch.tensor([[t]]), past_key_values=cache, position_ids=torch.tensor([[P + i]]), use_cache=True)
    return dict(case=case, tokens=toks, events=tracer.events)


def reference_logits(key: str, toks: list[int]) -> list[float]:
    """Last-position logits of a plain forward (no press): the function check, beyond the weights."""
    with torch.no_grad():
        return build_model(key)(torch.tensor([toks])).logits[0, -1].tolist()


def write_json(data: dict) -> None:
    """OUT with one line per list of numbers (readable diffs, a fraction of indent=1's lines)."""
    text = json.dumps(data, indent=1)
    text = re.sub(r"\[[\d\s,.eE+-]*\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(0)[1:-1]).strip() + "]", text)
    OUT.write_text(text + "\n")


def main() -> None:
    import kvpress
    import transformers

    torch.manual_seed(0)
    models = {}
    for key in MODELS:
        toks = case_tokens(CASES[0])[:16]
        models[key] = dict(config=MODELS[key], sha256=weight_sha(build_model(key)), probe=toks,
                           logits=reference_logits(key, toks))
    runs = [run_case(c) for c in CASES]
    meta = dict(kvpress=kvpress.__version__ if hasattr(kvpress, "__version__") else "0.5.5",
                transformers=transformers.__version__, torch=torch.__version__)
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data["kvpress"] = dict(meta=meta, models=models, runs=runs)
    write_json(data)
    print(f"wrote {OUT} ({sum(len(r['events']) for r in runs)} compression events)", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    main()
