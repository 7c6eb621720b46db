"""The references thinkc's decode engine is measured against, on the same model and prompts:
HF `generate` with a dynamic cache and with a static cache (compiled by transformers on CUDA), the
raw eager forward loop (`model(next_token, cache=DynamicCache)`: the floor any Python decode loop
pays), and on CUDA the weight-bandwidth roofline (weight bytes / measured device copy bandwidth).
Each runner returns (generated tokens, peak KV per row); greedy, no EOS, exactly `new` tokens."""
from __future__ import annotations

import inspect

import torch


def _left_pad(prompts: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    L = max(map(len, prompts))
    ids = torch.tensor([[0] * (L - len(p)) + p for p in prompts], device=device)
    att = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, att


@torch.no_grad()
def hf_generate(model, prompts, new: int, static: bool = False) -> tuple[int, int]:
    ids, att = _left_pad(prompts, next(model.parameters()).device)
    kw = {"cache_implementation": "static"} if static else {}
    out = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=new, min_new_tokens=new,
                         do_sample=False, pad_token_id=0, eos_token_id=None, **kw)
    return (out.shape[1] - ids.shape[1]) * len(prompts), ids.shape[1] + new - 1


@torch.no_grad()
def forward_loop(model, prompts, new: int) -> tuple[int, int]:
    """Greedy decoding with the plainest loop: one eager forward per token on a DynamicCache.
    Equal-length prompts only (no padding mask): the bench gives it random prompts."""
    from transformers import DynamicCache

    if len({len(p) for p in prompts}) != 1:
        raise ValueError("forward-loop needs equal-length prompts")
    ids = torch.tensor(prompts, device=next(model.parameters()).device)
    kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    cache = DynamicCache(config=model.config)
    logits = model(input_ids=ids, use_cache=True, logits_to_keep=1, **{kw: cache}).logits
    nxt = logits[:, -1].argmax(-1, keepdim=True)
    for _ in range(new - 1):
        nxt = model(input_ids=nxt, use_cache=True, logits_to_keep=1, **{kw: cache}).logits[:, -1].argmax(-1, keepdim=True)
    return new * len(prompts), ids.shape[1] + new - 1


def device_bandwidth(device: str, mib: int = 1024) -> float | None:
    """Measured device-to-device copy bandwidth, bytes/s (CUDA only: read + write counted)."""
    if not device.startswith("cuda"):
        return None
    a = torch.empty(mib << 20, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        b.copy_(a)
    end.record()
    torch.cuda.synchronize()
    return 2 * 10 * a.numel() / (start.elapsed_time(end) / 1e3)


def roofline_tokens_per_s(model, batch: int, bandwidth: float | None) -> float | None:
    """Decode tokens/s if every step only read the weights once at the measured bandwidth."""
    if not bandwidth:
        return None
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return batch * bandwidth / weight_bytes
