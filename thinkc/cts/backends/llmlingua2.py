"""LLMLingua-2 backend (TokenSkip style): a token-classification model (e.g. a local copy of
llmlingua-2-xlm-roberta-large-meetingbank) labels each word keep/drop; no answer conditioning.

The model folder must be given (nothing is downloaded). Its tokenizer is not the target model's,
so token counts in meta.cts use --tokenizer (the target's). Digits are force-kept and repeated
forced tokens dropped, as TokenSkip compressed its CoT data."""
from __future__ import annotations

import os

from thinkc.errors import ThinkcError


FAMILIES = {"xlm-roberta": "xlm-roberta-large", "bert": "bert-base-multilingual-cased"}


class LLMLingua2Backend:
    name, kind = "llmlingua2", "text"

    def __init__(self, folder: str | None, device: str = "cpu"):
        if not folder or not os.path.isdir(folder):
            raise ThinkcError("the llmlingua2 backend needs --reference-model pointing at a local LLMLingua-2 "
                              f"token-classification model folder (got {folder!r}); nothing is downloaded")
        import warnings

        from transformers import AutoConfig

        from thinkc.cts.backends.llmlingua import compressor_class

        config = AutoConfig.from_pretrained(folder, local_files_only=True)  # check before llmlingua loads it
        arch = getattr(config, "architectures", None) or []
        if not any("ForTokenClassification" in a for a in arch):
            raise ThinkcError(f"{folder}: not a token-classification model ({', '.join(arch) or 'unknown'}); "
                              "llmlingua2 needs an LLMLingua-2 checkpoint")
        # llmlingua finds word starts by the model *name* (## pieces for BERT, ▁ for XLM-R): give it
        # the family name matching the local folder's model type
        family = FAMILIES.get(config.model_type)
        if family is None:
            raise ThinkcError(f"{folder}: model type {config.model_type!r} is not one llmlingua2 handles "
                              f"({', '.join(FAMILIES)})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.compressor = compressor_class()(folder, device, use_llmlingua2=True)
        self.compressor.model_name = family
        self.folder = folder

    def meta(self) -> dict:
        import importlib.metadata

        return {"backend": self.name, "reference": str(self.folder), "llmlingua": importlib.metadata.version("llmlingua")}

    def compress(self, records, ratio: float, on_tokens=None) -> list[str]:
        out = []
        for r in records:
            if ratio >= 1.0 or not r["thinking"].strip():
                out.append(r["thinking"])
            else:
                res = self.compressor.compress_prompt([r["thinking"]], rate=ratio, force_reserve_digit=True,
                                                      drop_consecutive=True, use_context_level_filter=False)
                out.append(res["compressed_prompt"])
            if on_tokens is not None:
                on_tokens(len(self.compressor.tokenizer(r["thinking"], add_special_tokens=False)["input_ids"]))
        return out
