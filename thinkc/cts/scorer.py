"""Native CTS scorer: teacher-forced log-probs of every thinking token, with and without the answer.

    score_i = log p_R(x_i | answer, x_<i) - log p_R(x_i | x_<i)

The exact inputs (defined here and nowhere else):

    thinking ids  = tokenizer(thinking, add_special_tokens=False)          (tokenised ONCE)
    conditional   = [BOS] + tok("Answer: {answer}\\n\\nReasoning:\\n") + thinking ids
    unconditional = [BOS] + tok("Reasoning:\\n")                         + thinking ids

[BOS] is present only when the tokenizer has a bos_token. Both prefixes end with the same format
text, so the two passes differ only by the answer. Thinking token j sits at row position p + j
(p = prefix length) and is predicted by the logits at position p + j - 1: the first thinking token
is predicted from the last prefix token ("\\n" of "Reasoning:\\n"), never from itself (the public
implementation was off by one here).

Batching: rows (two per record) are sorted by length, right-padded and masked; only the hidden
states that predict thinking tokens go through the LM head, in chunks, so memory never holds
[batch, length, vocab]. Long rows run in windows of `window` tokens with a DynamicCache: each
window sees all earlier keys, so the scores equal one full pass (activation memory per window is
constant; the KV cache grows with the row as it must).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

COND_TEMPLATE = "Answer: {answer}\n\nReasoning:\n"
UNCOND_TEXT = "Reasoning:\n"
PREFIX_VERSION = "v1"  # bump when the templates change: stored scores made with another version are refused
HEAD_CHUNK = 1024  # hidden rows per LM-head matmul (bounds the [rows, vocab] logits buffer)


@dataclass
class TokenScores:
    """Per-token result for one record: thinking ids and float32 scores aligned 1:1."""

    ids: np.ndarray  # int32 [n]
    scores: np.ndarray  # float32 [n]


def thinking_ids(tokenizer, thinking: str) -> list[int]:
    return tokenizer(thinking, add_special_tokens=False)["input_ids"]


def prefix_ids(tokenizer, answer: str | None) -> list[int]:
    """The conditional prefix when `answer` is given, else the unconditional one (see module doc)."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    text = UNCOND_TEXT if answer is None else COND_TEMPLATE.format(answer=answer)
    return bos + tokenizer(text, add_special_tokens=False)["input_ids"]


def _pad_id(tokenizer) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if tid is not None:
            return tid
    return 0


@torch.no_grad()
def target_logprobs(model, rows: Sequence[Sequence[int]], starts: Sequence[int], pad_id: int = 0,
                    window: int | None = None, on_window=None) -> list[np.ndarray]:
    """log p(row[t] | row[:t]) for t in [starts[b], len(row_b)) of every row, in one padded batch.

    `window`: feed at most this many positions per forward, carrying a KV cache (None = one pass);
    `on_window(n_tokens)` is called after each forward with the real (unpadded) tokens it fed, so a
    long record shows progress. Returns float32 arrays (one per row, length len(row) - start)."""
    device = next(model.parameters()).device
    B, L = len(rows), max(len(r) for r in rows)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[b, : len(r)] = 1
    ids, mask = ids.to(device), mask.to(device)
    lens = [len(r) for r in rows]
    out = [np.zeros(max(0, n - s), dtype=np.float32) for n, s in zip(lens, starts)]
    W = L if not window or window >= L else window
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    cache = None
    if W < L:
        from transformers import DynamicCache

        cache = DynamicCache()
    for w0 in range(0, L, W):
        w1 = min(L, w0 + W)
        with warnings.catch_warnings():  # 5.24 renames past_key_values -> cache; 5.17 (GPU image) lacks `cache`
            warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated", category=FutureWarning)
            h = decoder(input_ids=ids[:, w0:w1], attention_mask=mask[:, :w1], past_key_values=cache,
                        use_cache=cache is not None,
                        position_ids=torch.arange(w0, w1, device=device).expand(B, -1)).last_hidden_state
        if on_window is not None:
            on_window(sum(max(0, min(n, w1) - w0) for n in lens))
        # hidden state at position t predicts row[t + 1]; keep those whose target is a thinking token
        picks, targets, where = [], [], []
        for b in range(B):
            t0, t1 = max(w0, starts[b] - 1), min(w1, lens[b] - 1)
            if t1 <= t0:
                continue
            picks.append(h[b, t0 - w0:t1 - w0])
            targets.append(ids[b, t0 + 1:t1 + 1])
            where.append((b, t0 + 1 - starts[b], t1 + 1 - starts[b]))
        if not picks:
            continue
        hs, tg = torch.cat(picks), torch.cat(targets)
        lp = torch.cat([_gather_logprob(head, hs[i:i + HEAD_CHUNK], tg[i:i + HEAD_CHUNK])
                        for i in range(0, len(hs), HEAD_CHUNK)]).cpu().numpy()
        k = 0
        for b, a, e in where:
            out[b][a:e] = lp[k:k + e - a]
            k += e - a
    return out


def _gather_logprob(head, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(h).float()
    return logits.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)


def _buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Row indices grouped `batch_size` at a time after sorting by length (longest first, ties by
    index): similar lengths share a batch, so padding stays small. Deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def score_records(model, tokenizer, records: Sequence[dict], *, conditional: bool = True,
                  batch_size: int = 8, window: int | None = None, on_batch=None) -> list[TokenScores]:
    """Score the thinking of each record (dicts with `thinking` and `answer`).

    conditional=True: native CTS score (cond - uncond log-prob). conditional=False: the
    unconditional ablation, score = -log p(x_i | x_<i) (surprisal: the tokens the model finds
    hardest to predict rank highest, as in perplexity-based pruning). `on_batch(n_tokens)` is called
    after each forward (progress: each window of a long record counts as it is fed)."""
    think = [thinking_ids(tokenizer, r["thinking"]) for r in records]
    uncond_prefix = prefix_ids(tokenizer, None)
    rows, starts, owner = [], [], []  # owner: (record index, is_conditional)
    for i, (r, t) in enumerate(zip(records, think)):
        if not t:
            continue
        rows.append(uncond_prefix + t), starts.append(len(uncond_prefix)), owner.append((i, False))
        if conditional:
            p = prefix_ids(tokenizer, r["answer"])
            rows.append(p + t), starts.append(len(p)), owner.append((i, True))
    logp: dict[tuple[int, bool], np.ndarray] = {}
    pad = _pad_id(tokenizer)
    for batch in _buckets([len(r) for r in rows], batch_size):
        res = target_logprobs(model, [rows[j] for j in batch], [starts[j] for j in batch], pad, window, on_batch)
        for j, lp in zip(batch, res):
            logp[owner[j]] = lp
    out = []
    for i, t in enumerate(think):
        ids = np.asarray(t, dtype=np.int32)
        if not t:
            out.append(TokenScores(ids, np.zeros(0, dtype=np.float32)))
        elif conditional:
            out.append(TokenScores(ids, (logp[(i, True)] - logp[(i, False)]).astype(np.float32)))
        else:
            out.append(TokenScores(ids, (-logp[(i, False)]).astype(np.float32)))
    return out
