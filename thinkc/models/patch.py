"""Gist attention for transformers' Qwen2 / Llama models, without copying model files.

    enable_gist_attention(model)                       # once, after loading
    mask = gist_attention_mask(meta, dtype, device)    # per batch, from the samples' GistMeta
    model(input_ids, attention_mask=mask, position_ids=pos)

We register an attention function "thinkc_gist" with transformers' AttentionInterface. It looks at
the mask it receives:
  - a FlexAttention BlockMask -> flex_attention with enable_gqa=True (torch.compile'd on GPU).
    transformers' own flex integration repeats K/V when the query head count is not a power of two
    (Qwen2.5-7B: 28, SmolLM2: 9); torch's kernel itself only needs Hq % Hkv == 0, so we call it here.
  - anything else (a dense 4D additive/bool mask, or what transformers built from a 2D padding mask)
    -> transformers' own SDPA function, unchanged.
The name is also registered with AttentionMaskInterface (as SDPA's mask builder): without that
transformers hands the function attention_mask=None for 2D masks (stack-notes). 4D tensors and
BlockMasks are passed through untouched by create_causal_mask in 5.17 .. 5.24.

CPU: flex has no backward there, so the default mask on CPU is the dense reference (SDPA)."""
from __future__ import annotations

import functools

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from thinkc.errors import ThinkcError
from thinkc.gist.rule import GistMeta, additive_mask, reference_mask

GIST_ATTENTION = "thinkc_gist"
FLEX_CAPABLE = (GIST_ATTENTION, "flex_attention")


@functools.lru_cache(maxsize=None)
def _compiled_flex():
    return torch.compile(flex_attention, dynamic=False)


def _flex(module, query, key, value, block_mask: BlockMask, scaling, compile: bool | None):
    q_len, kv_len = query.shape[2], key.shape[2]
    if tuple(block_mask.seq_lengths) != (q_len, kv_len):
        raise ThinkcError(f"gist BlockMask is for {tuple(block_mask.seq_lengths)} query/key tokens, "
                          f"the batch has ({q_len}, {kv_len})")
    if query.shape[1] % key.shape[1]:
        raise ThinkcError(f"{query.shape[1]} query heads are not a multiple of {key.shape[1]} KV heads")
    use_compile = query.is_cuda if compile is None else compile
    fn = _compiled_flex() if use_compile else flex_attention
    out = fn(query, key, value, block_mask=block_mask, scale=scaling, enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2).contiguous(), None


# Whether the flex path is torch.compile'd: None = on CUDA only (eager flex is slow but exact).
FLEX_COMPILE: bool | None = None


def gist_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                           scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """AttentionInterface function: query [B, Hq, Q, D], key/value [B, Hkv, K, D] ->
    ([B, Q, Hq, D], None)."""
    if isinstance(attention_mask, BlockMask):
        if dropout:
            raise ThinkcError("gist flex attention has no attention dropout; set attention_dropout=0")
        return _flex(module, query, key, value, attention_mask, scaling, FLEX_COMPILE)
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                  scaling=scaling, is_causal=is_causal, **kwargs)


@functools.lru_cache(maxsize=None)
def register_gist_attention() -> str:
    """Register "thinkc_gist" with transformers (idempotent); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(GIST_ATTENTION, gist_attention_forward)
    AttentionMaskInterface.register(GIST_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return GIST_ATTENTION


def enable_gist_attention(model) -> None:
    """Switch a loaded Qwen2 / Llama (or PEFT-wrapped) model to gist attention."""
    register_gist_attention()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        base.set_attn_implementation(GIST_ATTENTION)
    except (AttributeError, ValueError, TypeError):
        pass
    if base.config._attn_implementation != GIST_ATTENTION:  # older paths: set it on every config
        for m in base.modules():
            cfg = getattr(m, "config", None)
            if cfg is not None and hasattr(cfg, "_attn_implementation"):
                cfg._attn_implementation = GIST_ATTENTION
    if base.config._attn_implementation != GIST_ATTENTION:
        raise ThinkcError(f"could not switch {type(base).__name__} to gist attention")


def uses_flex(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base.config, "_attn_implementation", None) in FLEX_CAPABLE


def gist_attention_mask(meta: GistMeta, dtype: torch.dtype, device, use_flex: bool | None = None,
                        block_size: int = 128, model=None):
    """The attention mask for a batch of gist rows: a BlockMask [B, 1, L, L] (flex) or a dense
    additive float mask [B, 1, L, L] (SDPA). Default: flex on CUDA, dense on CPU (flex has no CPU
    backward); given `model`, flex only if the model runs gist (or flex) attention."""
    device = torch.device(device)
    m = meta.batched().to(device)
    if use_flex is None:
        use_flex = device.type == "cuda" and (model is None or uses_flex(model))
    if use_flex:
        return _block_mask(m, block_size)
    return additive_mask(reference_mask(m), dtype)[:, None]


def _block_mask(meta: GistMeta, block_size: int) -> BlockMask:
    from thinkc.gist.block_mask import gist_block_mask

    return gist_block_mask(meta, block_size)
