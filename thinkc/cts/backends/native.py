"""The native CTS backend: score_i = log p(x_i | answer, x_<i) - log p(x_i | x_<i) (scorer.py)."""
from __future__ import annotations

from thinkc.cts import scorer
from thinkc.errors import ThinkcError


class NativeBackend:
    name, kind, conditional = "native", "scores", True

    def __init__(self, model, tokenizer, batch_size: int = 8, window: int | None = 2048, reference: str | None = None):
        cfg = getattr(model, "config", None)
        if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None) not in (None, 1.0):
            # the scorer applies only the LM head to the hidden states (no [B, L, vocab] buffer)
            raise ThinkcError(f"{type(model).__name__} post-processes its logits (softcapping/scale), which the "
                              "native scorer does not apply; use a Llama/Qwen-style reference model")
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.window, self.reference = batch_size, window, reference

    def meta(self) -> dict:
        """What the stored scores depend on (window and batch size do not change them beyond 1e-6)."""
        tok = self.tokenizer
        return {"backend": self.name, "reference": str(self.reference or type(self.model).__name__),
                "tokenizer": getattr(tok, "name_or_path", "") or type(tok).__name__, "vocab": len(tok),
                "prefix": scorer.PREFIX_VERSION, "dtype": str(next(self.model.parameters()).dtype)}

    def score(self, records, on_tokens=None) -> list[scorer.TokenScores]:
        return scorer.score_records(self.model, self.tokenizer, records, conditional=self.conditional,
                                    batch_size=self.batch_size, window=self.window, on_batch=on_tokens)
