"""CTS scoring backends, one small module each.

Two kinds:
- "scores" backends (native, unconditional) give a float32 score per thinking token; selection at
  any ratio then happens in thinkc.cts.select, so a new ratio needs no rescoring.
- "text" backends (llmlingua, llmlingua2) wrap LLMLingua's PromptCompressor, which compresses to
  text at one rate per call; their outputs are stored per ratio.
"""
from __future__ import annotations

import os

from thinkc.errors import ThinkcError

BACKENDS = ("native", "unconditional", "llmlingua", "llmlingua2")


def reference_folder(name: str) -> str:
    """A local folder for `name` (LLMLingua loads models by path): the folder itself, or the
    prepared SmolLM2 for "smollm2"."""
    if os.path.isdir(name):
        return name
    if name == "smollm2":
        from thinkc.models.smollm2 import prepare_smollm2

        return str(prepare_smollm2())
    raise ThinkcError(f"{name!r} is not a local model folder (this backend loads the reference model from disk)")


def load_reference(name: str, device: str = "cpu", dtype: str = "float32"):
    """(model, tokenizer) for a local folder, "smollm2" or a shipped tiny name, via thinkc.models."""
    import torch

    try:
        from thinkc.models.loading import load_model, load_tokenizer
    except ImportError:  # thinkc.models.loading not available: plain local folders still work
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = reference_folder(name)
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=getattr(torch, dtype))
        return model.to(device).eval(), tok
    return load_model(name, dtype=getattr(torch, dtype), device=device).eval(), load_tokenizer(name)


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
    if name == "llmlingua":
        from thinkc.cts.backends.llmlingua import LLMLinguaBackend

        return LLMLinguaBackend(reference_folder(reference), device=device, tokenizer=tokenizer)
    if name == "llmlingua2":
        from thinkc.cts.backends.llmlingua2 import LLMLingua2Backend

        return LLMLingua2Backend(reference, device=device)
    raise ThinkcError(f"unknown CTS backend {name!r} (choose from {', '.join(BACKENDS)})")
