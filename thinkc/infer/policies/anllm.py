"""AnLLM: one anchor token per thought, no [o]; the anchor sees only its own thought
(see_current) and decoding continues from the anchor's logits."""
from __future__ import annotations

from dataclasses import replace

from thinkc.infer.policies.lightthinker import GistSpec, LightThinkerPolicy


class AnLLMPolicy(LightThinkerPolicy):
    name = "anllm"

    def __init__(self, spec: GistSpec):
        spec = replace(spec, cache_ids=spec.cache_ids[:1], output_id=None,
                       flags=replace(spec.flags, see_current=True))
        super().__init__(spec)
