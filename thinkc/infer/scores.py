"""Attention scores for H2O without eager attention: the attention output stays on transformers'
SDPA path (flash / memory-efficient kernels on GPU), and only the probabilities the policy needs are
computed beside it from each layer's query and key, for the step's real queries only (a decode
step has one query per row, so this is a [B, H, 1, K] product: the same cost class as the KV read).

    with scored_attention(model) as sink:     # for a whole decode run
        sink.start(weights)                   # per forward: real-query weights [B, Q] (1 real, 0 pad)
        model(...)                            # every layer adds sum_{heads, real queries} softmax(qk)
        scores = sink.acc                     # [B, K] float32

R-KV also needs key redundancy at its compression steps: a policy sets `sink.want_keys` (through
`active_sink()`) before a forward, and that forward's layers also leave `sink.redundancy` [B, K] (the
sum over layers of key_redundancy averaged over KV heads; `sink.layers` of them), computed from the
post-RoPE keys the layer attends; eagerly only for the rows whose query ends a `sink.want_every` interval (zeros elsewhere),
compiled for every row. Off by default: H2O's path is unchanged.
"""
from __future__ import annotations

import contextlib
import functools

import torch

SCORED_ATTENTION = "thinkc_scored"


class ScoreSink:
    def __init__(self, base: str):
        self.base, self.acc, self.weights = base, None, None
        self.want_keys, self.redundancy, self.layers = False, None, 0
        self.want_every, self.pos = None, None  # redundancy for the rows whose query ends an interval


    def start(self, weights: torch.Tensor, pos: torch.Tensor | None = None) -> None:
        """Per forward: real-query weights [B, Q] and (optional) the queries' positions [B, Q]."""
        self.weights, self.acc, self.pos = weights.float(), None, pos
        self.redundancy, self.layers = None, 0


def active_sink() -> ScoreSink | None:
    """The score sink of the innermost scored_attention block, if any."""
    return _ACTIVE[-1] if _ACTIVE else None


def key_redundancy(key: torch.Tensor, valid: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """R-KV's redundancy of each key [B, H, K] from keys [B, H, K, D] and valid keys [B, K]: cosine
    similarity among the valid keys (self-similarity 0); in each key's row the newest other key more
    similar than `threshold` is not counted (the newest of a near-duplicate set survives; with none,
    the row's first entry, as the authors' code does); the mean over the valid rows, then a softmax
    over the valid keys."""
    kn = key.float() / (key.float().norm(dim=-1, keepdim=True) + 1e-8)
    sim = torch.matmul(kn, kn.transpose(-1, -2))
    K = sim.shape[-1]
    pair = valid[:, None, :, None] & valid[:, None, None, :] & ~torch.eye(K, dtype=torch.bool, device=sim.device)
    sim = torch.where(pair, sim, torch.zeros_like(sim))
    idx = torch.arange(K, device=sim.device)
    newest = torch.where(sim > threshold, idx, torch.zeros_like(idx)).max(-1).values  # [B, H, K]
    sim = sim.scatter(-1, newest[..., None], 0.0)
    sim = torch.where(pair, sim, torch.zeros_like(sim))
    n = valid.sum(-1).clamp(min=1)[:, None, None].float()
    mean = sim.sum(-2) / n
    mean = torch.where(valid[:, None, :], mean, torch.full_like(mean, float("-inf")))
    return torch.nan_to_num(mean.softmax(-1), nan=0.0)


def _add_redundancy(sink: ScoreSink, key: torch.Tensor, attention_mask) -> None:
    K = key.shape[-2]
    if attention_mask is None:
        valid = torch.ones(key.shape[0], K, dtype=torch.bool, device=key.device)
    elif attention_mask.dtype == torch.bool:
        valid = attention_mask[:, 0, -1, :K]
    else:
        valid = attention_mask[:, 0, -1, :K].float() > torch.finfo(torch.float32).min / 2
    pos, every = sink.pos, sink.want_every
    if every is None or pos is None or pos.shape[1] != 1 or torch.compiler.is_compiling():
        red = key_redundancy(key, valid).mean(1)  # compiled: every row (a fixed shape)
    else:  # eager decode step: only the rows whose query ends an interval (the K x K products are the cost)
        idx = (((pos[:, 0] + 1) % every == 0) & (sink.weights[:, 0] > 0)).nonzero()[:, 0].to(key.device)
        red = torch.zeros(key.shape[0], K, dtype=torch.float32, device=key.device)
        if idx.numel():
            red[idx] = key_redundancy(key[idx], valid[idx]).mean(1)
    sink.redundancy = red if sink.redundancy is None else sink.redundancy + red
    sink.layers += 1


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
    if sink.want_keys:
        _add_redundancy(sink, key, attention_mask)
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
