"""LLMLingua backend (comparison): PromptCompressor's longllmlingua path with the answer as the
question/condition, as the public CTS implementation used it.

Two fixes make llmlingua 0.2.2 run offline on transformers 5.x (stack-notes.md):
- its __init__ downloads a tiktoken encoding only to count tokens: we count with the reference
  model's own tokenizer instead;
- its `get_ppl` iterates `past_key_values` as (k, v) pairs, which transformers 5's DynamicCache no
  longer is: `get_ppl` is re-implemented on a DynamicCache, keeping llmlingua's legacy
  [[k, v], ...] list format outside (its iterative loop slices those lists).

Budget: like the original, the answer is concatenated to the compressed prompt (and counted by
llmlingua in its token budget); we strip it from the result. LLMLingua thresholds per segment, so
its achieved ratio misses the target: the pipeline reports the achieved ratio, measured with the
target tokenizer.
"""
from __future__ import annotations

from thinkc.errors import ThinkcError

SUPPORTED = ("0.2.2",)  # the versions whose internals the two patches below were checked against


class _TokenCounter:
    """Stands in for tiktoken's Encoding: llmlingua only calls .encode() to count tokens."""

    def __init__(self, owner):
        self.owner = owner  # the compressor: count with whatever tokenizer it holds now

    def encode(self, text: str) -> list[int]:
        return self.owner.tokenizer(text, add_special_tokens=False)["input_ids"]


def compressor_class():
    try:
        import importlib.metadata

        import llmlingua.prompt_compressor as pc
    except ImportError as e:
        raise ThinkcError(f"the llmlingua backend needs llmlingua ({e}); pip install 'thinkc[llmlingua]'") from None
    version = importlib.metadata.version("llmlingua")
    if version not in SUPPORTED:
        raise ThinkcError(f"llmlingua {version} is not supported by the llmlingua backend (checked: "
                          f"{', '.join(SUPPORTED)}); its internals are patched, pip install llmlingua==0.2.2")
    import torch
    from transformers import DynamicCache

    class OfflinePromptCompressor(pc.PromptCompressor):
        def __init__(self, model_name: str, device_map: str, use_llmlingua2: bool = False):
            real = pc.tiktoken
            pc.tiktoken = type("NoTiktoken", (), {"encoding_for_model": staticmethod(lambda name: None)})
            try:
                super().__init__(model_name=model_name, device_map=device_map,
                                 model_config={"trust_remote_code": False, "local_files_only": True},
                                 use_llmlingua2=use_llmlingua2)
            finally:
                pc.tiktoken = real
            self.oai_tokenizer = _TokenCounter(self)

        def get_ppl(self, text, granularity="sentence", input_ids=None, attention_mask=None, past_key_values=None,
                    return_kv=False, end=None, condition_mode="none", condition_pos_id=0):
            """Per-token (or mean) cross-entropy of `text` / `input_ids[:, past:end]`, like llmlingua's,
            with the KV cache passed as a DynamicCache and handed back as [[k, v], ...]."""
            if input_ids is None:
                enc = self.tokenizer(text, return_tensors="pt")
                input_ids, attention_mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
            past = 0 if past_key_values is None else past_key_values[0][0].shape[2]
            end = min(input_ids.shape[1] if end is None else end, past + self.max_position_embeddings)
            cache = DynamicCache(ddp_cache_data=[(k, v) for k, v in past_key_values]) if past_key_values else DynamicCache()
            with torch.no_grad():
                out = self.model(input_ids[:, past:end], attention_mask=attention_mask[:, :end],
                                 past_key_values=cache, use_cache=True)
            logits = out.logits[:, :-1].float()
            labels = input_ids[:, past + 1:end]
            active = (attention_mask[:, past:end] == 1)[:, :-1].reshape(-1)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1])[active],
                                                     labels.reshape(-1)[active], reduction="none")
            if condition_mode == "before":
                loss = loss[:condition_pos_id]
            elif condition_mode == "after":
                loss = loss[condition_pos_id:]
            res = loss.mean() if granularity == "sentence" else loss
            kv = [[layer.keys, layer.values] for layer in out.past_key_values.layers]
            return (res, kv) if return_kv else res

    return OfflinePromptCompressor


class LLMLinguaBackend:
    name, kind = "llmlingua", "text"

    def __init__(self, folder: str, device: str = "cpu", tokenizer=None):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.compressor = compressor_class()(folder, device)
        # thinkc's loader, not AutoTokenizer: on transformers 5 AutoTokenizer may rebuild a generic
        # tokenizer.json as the model type's class and change the ids (thinkc/models/loading.py)
        from thinkc.cts.backends import load_reference_tokenizer

        tok = load_reference_tokenizer(folder)
        tok.padding_side = "left"  # as llmlingua sets up its own tokenizer
        self.compressor.tokenizer = tok
        self.folder = folder
        self.tokenizer = tok if tokenizer is None else tokenizer

    def meta(self) -> dict:
        import importlib.metadata

        return {"backend": self.name, "reference": str(self.folder), "llmlingua": importlib.metadata.version("llmlingua")}

    def compress_one(self, thinking: str, answer: str, ratio: float) -> str:
        if ratio >= 1.0 or not thinking.strip():
            return thinking
        res = self.compressor.compress_prompt(
            [thinking], question=answer, rate=ratio, rank_method="longllmlingua",
            condition_in_question="after_condition", condition_compare=True, reorder_context="original",
            dynamic_context_compression_ratio=0.3, use_context_level_filter=False, concate_question=True)
        text = res["compressed_prompt"]
        tail = "\n\n" + answer
        if text.endswith(tail):
            text = text[: -len(tail)]
        elif text == answer:
            text = ""
        return text

    def compress(self, records, ratio: float, on_tokens=None) -> list[str]:
        import warnings

        out = []
        for r in records:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append(self.compress_one(r["thinking"], r["answer"], ratio))
            if on_tokens is not None:
                on_tokens(len(self.tokenizer(r["thinking"], add_special_tokens=False)["input_ids"]))
        return out
