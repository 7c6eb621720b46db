"""The gist layout's special tokens in the tokenizer and the model's embedding / LM head.

    ids = add_gist_tokens(tokenizer, model, cfg)   # {"<w>": 400, "<|c_0|>": 401, ...}
    trigger, cache, output = gist_token_ids(tokenizer, cfg)

New rows start as the mean embedding of `cfg.init_text` (a short description of what the tokens
do), in the input embedding and, when it is not tied, the LM head: the new tokens then begin as
"average text" instead of noise, which keeps early training losses sane."""
from __future__ import annotations

import torch
from tokenizers import AddedToken

from thinkc.errors import ThinkcError
from thinkc.gist.config import GistConfig


def add_gist_tokens(tokenizer, model=None, cfg: GistConfig | None = None) -> dict[str, int]:
    """Add `cfg.special_tokens()` to `tokenizer` (idempotent), grow `model`'s embeddings if needed
    and initialise the rows of the tokens added by this call. Returns token -> id."""
    cfg = cfg or GistConfig()
    tokens = cfg.special_tokens()
    vocab = tokenizer.get_vocab()
    new = [t for t in tokens if t not in vocab]
    if new:
        # special=True: never split, never normalised; "\n\n" is refused by GistConfig itself
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in new], special_tokens=True)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tokens}
    if model is not None and new:
        _grow_and_init(model, tokenizer, [ids[t] for t in new], cfg.init_text)
    return ids


def gist_token_ids(tokenizer, cfg: GistConfig) -> tuple[int | None, list[int], int | None]:
    """(trigger id or None at token level / normal mode, cache ids, output id or None)."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in cfg.special_tokens() if t not in vocab]
    if missing:
        raise ThinkcError(f"tokenizer lacks the gist tokens {missing}: call add_gist_tokens first "
                          "(or load the tokenizer saved with the trained model)")
    trigger = vocab[cfg.trigger] if cfg.uses_trigger else None
    cache = [vocab[t] for t in cfg.cache_tokens()] if cfg.compresses else []
    output = vocab[cfg.output_token] if cfg.compresses and cfg.use_output_token else None
    return trigger, cache, output


def recover_token_id(tokenizer, cfg: GistConfig) -> int:
    return tokenizer.get_vocab()[cfg.recover_token]


@torch.no_grad()
def _grow_and_init(model, tokenizer, new_ids: list[int], init_text: str) -> None:
    emb = model.get_input_embeddings()
    # Some checkpoints (Qwen2.5) already have spare rows past the tokenizer: never shrink them
    if emb.weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        emb = model.get_input_embeddings()
    init_ids = [i for i in tokenizer.encode(init_text, add_special_tokens=False) if i not in set(new_ids)]
    if not init_ids:
        raise ThinkcError(f"init_text {init_text!r} encodes to no ordinary tokens")
    rows = torch.tensor(new_ids, device=emb.weight.device)
    src = torch.tensor(init_ids, device=emb.weight.device)
    emb.weight[rows] = emb.weight[src].float().mean(0).to(emb.weight.dtype)
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() != emb.weight.data_ptr():
        head.weight[rows] = head.weight[src].float().mean(0).to(head.weight.dtype)
        if getattr(head, "bias", None) is not None:
            head.bias[rows] = head.bias[src].float().mean(0).to(head.bias.dtype)
