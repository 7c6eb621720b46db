"""Attention scores for H2O without eager attention: the attention output stays on transformers'
SDPA path (flash / memory-efficient kernels on GPU), and only the probabilities the policy needs are
computed beside it from each layer's query and key, for the step's real queries only (a decode
step has one query per row, so this is a [B, H, 1, K] product: the same cost class as the KV read).

    with scored_attention(model) as sink:     # for a whole decode run
        sink.start(weights)                   # per forward: real-query weights [B, Q] (1 real, 0 pad)
        model(...)                            # every layer adds sum_{heads, real queries} softmax(qk)
        scores = sink.acc                     # [B, K] float32
"""
from __future__ import annotations

import contextlib
import functools

import torch

SCORED_ATTENTION = "thinkc_scored"


class ScoreSink:
    def __init__(self, base: str):
        self.base, self.acc, self.weights = base, None, None

    def start(self, weights: torch.Tensor) -> None:
        self.weights, self.acc = weights.float(), None


_ACTIVE: list[ScoreSink] = []


def scored_attention_forward(module, query, key, value, attention_mask, **kwargs):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sink = _ACTIVE[-1]
    base = sink.base
    if base == "sdpa":
        from transformers.integrations.sdpa_attention import sdpa_attention_forward as fn
    else:
        fn = ALL_ATTENTION_FUNCTIONS[base]
    out = fn(module, query, key, value, attention_mask, **kwargs)
    groups = query.shape[1] // key.shape[1]
    k = key.repeat_interleave(groups, dim=1) if groups > 1 else key
    scale = kwargs.get("scaling") or query.shape[-1] ** -0.5
    logits = torch.matmul(query.float(), k.float().transpose(-1, -2)) * scale  # [B, H, Q, K]
    if attention_mask is not None:
        logits = logits + attention_mask.float()
    probs = logits.softmax(-1)
    add = torch.einsum("bhqk,bq->bk", probs, sink.weights)
    sink.acc = add if sink.acc is None else sink.acc + add
    return out


@functools.lru_cache(maxsize=None)
def _register() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(SCORED_ATTENTION, scored_attention_forward)
    AttentionMaskInterface.register(SCORED_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return SCORED_ATTENTION


@contextlib.contextmanager
def scored_attention(model):
    """Route the model's attention through the scoring wrapper for the duration of the block."""
    _register()
    prev = model.config._attn_implementation
    base = "sdpa" if prev in ("eager", None, SCORED_ATTENTION) else prev
    sink = ScoreSink(base)
    _ACTIVE.append(sink)
    model.set_attn_implementation(SCORED_ATTENTION)
    try:
        yield sink
    finally:
        _ACTIVE.remove(sink)
        model.set_attn_implementation(prev)
