"""Ablation from the CTS paper: perplexity only, no answer.

score_i = -log p(x_i | x_<i) (the token's surprisal): the tokens the reference model finds hardest
to predict rank highest and are kept, as in perplexity-based pruning (LLMLingua's criterion).
One forward per record instead of two."""
from __future__ import annotations

from thinkc.cts.backends.native import NativeBackend


class UnconditionalBackend(NativeBackend):
    name, conditional = "unconditional", False
