"""CTS scoring backends, one small module each.

Two kinds:
- "scores" backends (native, unconditional, random) give a float32 score per thinking token; selection at
  any ratio then happens in thinkc.cts.select, so a new ratio needs no rescoring.
- "text" backends (llmlingua, llmlingua2) wrap LLMLingua's PromptCompressor, which compresses to
  text at one rate per call; their outputs are stored per ratio.
"""
from __future__ import annotations

from thinkc.errors import ThinkcError

BACKENDS = ("native", "unconditional", "random", "llmlingua", "llmlingua2")


def reference_folder(name: str) -> str:
    """A local folder for `name` (LLMLingua loads models by path): a folder, "smollm2" or a
    shipped checkpoint name, resolved by thinkc.models.loading (never downloads)."""
    from thinkc.models.loading import resolve_model

    return str(resolve_model(name))


def load_reference(name: str, device: str = "cpu", dtype: str = "float32"):
    """(model, tokenizer) for a local folder, "smollm2" or a shipped tiny name, via thinkc.models."""
    from thinkc.models.loading import load_model, load_tokenizer

    return load_model(name, dtype=dtype, device=device), load_tokenizer(name)


def load_reference_tokenizer(name: str):
    """Only the tokenizer of a reference model (a merge needs no model)."""
    from thinkc.models.loading import load_tokenizer

    return load_tokenizer(name)


class StoredScores:
    """Stands in for a scores backend when only stored scores are read (--merge): no model loaded."""

    kind = "scores"

    def __init__(self, name: str, tokenizer):
        self.name, self.tokenizer = name, tokenizer


def make_backend(name: str, reference: str | None = None, *, model=None, tokenizer=None, device: str = "cpu",
                 batch_size: int = 8, window: int | None = 2048, dtype: str = "float32"):
    """Build backend `name`. Scores backends take an already loaded (model, tokenizer) or load
    `reference`; text backends load `reference` from its folder themselves."""
    if name in ("native", "unconditional"):
        from thinkc.cts.backends.native import NativeBackend
        from thinkc.cts.backends.unconditional import UnconditionalBackend

        if model is None:
            model, tokenizer = load_reference(reference, device, dtype)
        cls = NativeBackend if name == "native" else UnconditionalBackend
        return cls(model, tokenizer, batch_size=batch_size, window=window, reference=reference)
    if name == "random":  # the control: no model, the reference's tokenizer only
        from thinkc.cts.backends.random import RandomBackend

        return RandomBackend(tokenizer or load_reference_tokenizer(reference), reference=reference)
    if name == "llmlingua":
        from thinkc.cts.backends.llmlingua import LLMLinguaBackend

        return LLMLinguaBackend(reference_folder(reference), device=device, tokenizer=tokenizer)
    if name == "llmlingua2":
        from thinkc.cts.backends.llmlingua2 import LLMLingua2Backend

        return LLMLingua2Backend(reference, device=device)
    raise ThinkcError(f"unknown CTS backend {name!r} (choose from {', '.join(BACKENDS)})")
