"""The control for every CTS backend: random scores.

score_i ~ U[0, 1), drawn from a generator seeded by the record's id (sha256), so a run is
deterministic and resumable like the others. Selection then applies the same ratio and forced
tokens as any scores backend, which shows what the forcing alone keeps; `thinkc data cts` reports
the same draw as the "random scores' gap" beside every backend's gap. No model is loaded: the
reference's tokenizer only splits the thinking into the tokens that are scored."""
from __future__ import annotations

import hashlib

import numpy as np


def random_scores(record_id, n: int) -> np.ndarray:
    """n uniform float32 scores from a generator seeded by the record id."""
    seed = int.from_bytes(hashlib.sha256(str(record_id).encode()).digest()[:8], "little")
    return np.random.default_rng(seed).random(n).astype(np.float32)


class RandomBackend:
    name, kind = "random", "scores"

    def __init__(self, tokenizer, reference: str | None = None):
        self.tokenizer, self.reference = tokenizer, reference

    def meta(self) -> dict:
        tok = self.tokenizer
        return {"backend": self.name, "tokenizer": getattr(tok, "name_or_path", "") or type(tok).__name__,
                "vocab": len(tok), "seed": "sha256(id)"}

    def score(self, records, on_tokens=None) -> list:
        from thinkc.cts import scorer  # torch: only when scoring

        out = []
        for r in records:
            ids = np.asarray(scorer.thinking_ids(self.tokenizer, r["thinking"]), dtype=np.int32)
            out.append(scorer.TokenScores(ids, random_scores(r["id"], len(ids))))
            if on_tokens is not None:
                on_tokens(len(ids))
        return out
