"""`decode`: the one-call API over the decode engine (thinkc.infer.engine).

    results = decode(model, prompts, policy, max_new_tokens=256, eos_ids=[...])

Every prompt is decoded with the policy (vanilla, LightThinker, AnLLM, H2O, SepLLM, StreamingLLM)
in `batch_size` slots (default: all prompts at once) with continuous batching; positions are
absolute and never re-indexed (rolling positions are not implemented). See the engine for the
measurements: peak KV (largest cache length right after a forward, the transient gist block
included), kv_trace (keys kept after each step), dependency (the original LightThinker definition
for gist methods: prompt + current thought so far + (n+1) x compressions so far, per output token;
keys the producing query saw + 1 for the others, LP*LO + LO(LO+1)/2 for vanilla), compressions."""
from __future__ import annotations

from typing import Callable

import torch

from thinkc.infer.engine import DecodeEngine
from thinkc.infer.policies.base import CachePolicy
from thinkc.infer.result import DecodeResult, ForceFn  # noqa: F401  (re-exported)
from thinkc.infer.sampling import SamplingConfig


@torch.no_grad()
def decode(
    model,
    prompts: list[list[int]],
    policy: CachePolicy,
    *,
    max_new_tokens: int = 256,
    eos_ids=(),
    sampling: SamplingConfig = SamplingConfig(),
    force_compress: ForceFn | dict | int | None = None,
    record_logits: bool = False,
    pad_id: int = 0,
    sample_indices: list[int] | None = None,
    on_step: Callable[[int], None] | None = None,
    on_result: Callable[[DecodeResult], None] | None = None,
    batch_size: int | None = None,
    prefill_chunk: int = 512,
    compile: bool = False,
    prompt_meta=None,
    kv_budget: int | None = None,
    page_size: int = 16,
    attention: str | None = None,
    pack_blocks: bool = False,
    engine_out: list | None = None,
) -> list[DecodeResult]:
    """Decode every prompt (token id lists, ragged) to at most `max_new_tokens` tokens or an EOS id.
    `force_compress` forces a gist compression after a given generated token: every N tokens (int),
    a function (sample index, n generated) -> bool or a dict {sample index: {n, ...}}.
    `sample_indices` name the samples (per-sample generators; default 0..N-1). `on_step(n)` is called
    after every decode step with the rows that produced a token; `on_result(result)` as each sample
    finishes. Returns one DecodeResult per prompt, in order. `pad_id` is unused (kept for callers):
    padding slots are masked by the rule, their token ids never matter. `compile` runs the decode
    step's forward under torch.compile (CUDA graphs on GPU; see DecodeEngine._compile).
    `prompt_meta`: per prompt None or the GistMeta of a compressed prompt (aug / recover).
    `kv_budget`: KV tokens for all rows together, in pages of `page_size` (thinkc.infer.pool): rows
    are admitted by free pages and preempted (swapped to host) when the pool runs dry; None gives
    every row its full capacity; `attention`: how the pool is read (thinkc.infer.attention: gather,
    flex or kernel; default flex on CUDA, the C++ kernel or gather on CPU). `pack_blocks`: a row that ends
    a thought feeds the rest of its gist block in one forward instead of one token per step.
    `engine_out`: a list the engine is appended to (its measurements)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("decode needs non-empty prompts")
    engine = DecodeEngine(model, policy, slots=min(batch_size or len(prompts), len(prompts)),
                          max_prompt=max(map(len, prompts)), max_new_tokens=max_new_tokens, eos_ids=eos_ids,
                          sampling=sampling, prefill_chunk=prefill_chunk, record=record_logits,
                          compile=compile, kv_budget=kv_budget, page_size=page_size,
                          attention=attention, pack_blocks=pack_blocks)
    if engine_out is not None:
        engine_out.append(engine)
    return engine.run(prompts, sample_indices, force_compress, on_step=on_step, on_result=on_result,
                      prompt_meta=prompt_meta)
