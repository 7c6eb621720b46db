"""LoRA with new (gist) tokens, saved small.

Only the new tokens' rows of the input embedding (and of an untied LM head) train, through peft's
`trainable_token_indices`; every save (checkpoints and final/adapter) stores those rows alone
(`save_embedding_layers=False`), not the whole resized embedding and head: an adapter on SmolLM2 is
a few MB instead of 235 MB. The tokenizer saved beside the adapter carries the new tokens, so
peft's AutoPeftModelForCausalLM resizes the base model itself when it loads it:

    from peft import AutoPeftModelForCausalLM
    model = AutoPeftModelForCausalLM.from_pretrained("runs/x/final/adapter")   # no manual resize
"""
from __future__ import annotations

import functools

from thinkc.errors import ThinkcError
from thinkc.train.config import TrainConfig


def tied_head(model) -> bool:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return bool(getattr(config, "tie_word_embeddings", False))


def token_indices(model, new_token_ids: list[int]) -> dict:
    """Which layers train which rows: the embedding always; the LM head too when it is not tied
    (a tied head follows the embedding; an untied one must learn to predict the new tokens)."""
    if not new_token_ids:
        return {}
    out = {"embed_tokens": list(new_token_ids)}
    if not tied_head(model) and hasattr(model, "lm_head"):
        out["lm_head"] = list(new_token_ids)
    return out


def apply_lora(cfg: TrainConfig, model, new_token_ids: list[int]):
    from peft import LoraConfig, get_peft_model

    lo = cfg.lora
    kw = dict(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=list(lo.target_modules),
              task_type="CAUSAL_LM")
    indices = token_indices(model, new_token_ids)
    if indices:
        kw["trainable_token_indices"] = indices
    try:
        peft_model = get_peft_model(model, LoraConfig(**kw))
    except ValueError as e:
        raise ThinkcError(f"lora: {e}") from None
    # every save path (Trainer checkpoints, final/adapter) keeps only the trained token rows
    peft_model.save_pretrained = functools.partial(peft_model.save_pretrained, save_embedding_layers=False)
    return peft_model
