"""Tiny random Qwen2 / Llama models built in-process from a config (tests, CPU recipes).

Shapes keep what matters for correctness: GQA (more query than KV heads), RoPE, tied or untied
embeddings, several layers. No files, no hub.
"""
from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

TINY_DEFAULTS = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    rope_theta=10000.0,
)


def tiny_config(arch: str = "qwen2", vocab_size: int = 512, **overrides):
    kw = {**TINY_DEFAULTS, "vocab_size": vocab_size, **overrides}
    if arch == "qwen2":
        return Qwen2Config(tie_word_embeddings=kw.pop("tie_word_embeddings", True), **kw)
    if arch == "llama":
        return LlamaConfig(tie_word_embeddings=kw.pop("tie_word_embeddings", False), **kw)
    raise ValueError(f"unknown tiny architecture {arch!r} (qwen2 or llama)")


def tiny_model(arch: str = "qwen2", vocab_size: int = 512, seed: int = 0,
               attn_implementation: str = "sdpa", dtype=torch.float32, **overrides):
    """A randomly initialised tiny causal LM, deterministic by seed, in eval mode."""
    cfg = tiny_config(arch, vocab_size, **overrides)
    cfg._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    cls = Qwen2ForCausalLM if arch == "qwen2" else LlamaForCausalLM
    model = cls(cfg).to(dtype)
    return model.eval()
