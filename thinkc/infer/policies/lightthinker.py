"""LightThinker: when a thought ends, feed its cache tokens C_i and [o]; the thought's KV then
expires (thinkc.gist.rule) and the loop drops it in place.

A thought ends when the row emits the trigger `<w>` (thought level), after `step` generated
tokens (token level), or when the caller forces it (`forced`: the trigger is inserted after the
token at thought level, so the layout stays the trained one)."""
from __future__ import annotations

from dataclasses import dataclass, field

from thinkc.gist.rule import GistFlags, Role
from thinkc.infer.policies.base import CachePolicy, RowState


@dataclass(frozen=True)
class GistSpec:
    """Token ids and switches of a gist layout, as the decode loop needs them."""

    cache_ids: tuple[int, ...]
    output_id: int | None  # None: AnLLM (continue from the last cache token's logits)
    trigger_id: int | None = None
    instr_ids: tuple[int, ...] = ()
    level: str = "thought"  # "thought" (ends at trigger) or "token" (every `step` tokens)
    step: int = 6
    flags: GistFlags = field(default_factory=GistFlags)
    exclude_continue: bool = False
    close_ids: tuple[int, ...] = ()  # "</think>": the layout compresses only the thinking
    anchor_generated: bool = False  # AnLLM as the original: the model generates the anchor itself (no trigger)

    @classmethod
    def from_config(cls, cfg, tokenizer) -> "GistSpec":
        """From a thinkc.gist.config.GistConfig and the tokenizer holding its tokens."""
        from thinkc.gist.tokens import gist_token_ids

        ids = gist_token_ids(tokenizer, cfg)
        trigger, cache, output = ids[0], ids[1], ids[2]
        instr_text = cfg.output_compress_instruction  # encoded as the layout builder does
        instr = tuple(tokenizer.encode(instr_text, add_special_tokens=False)) if instr_text else ()
        from thinkc.gist.layout import THINK_CLOSE

        close = tuple(tokenizer.encode(THINK_CLOSE.strip(), add_special_tokens=False))
        return cls(cache_ids=tuple(cache), output_id=output, trigger_id=trigger, instr_ids=instr,
                   level=cfg.level, step=cfg.step, flags=cfg.flags,
                   exclude_continue=bool(getattr(cfg, "exclude_continue", False)), close_ids=close,
                   anchor_generated=bool(getattr(cfg, "anllm", False)))


class LightThinkerPolicy(CachePolicy):
    name = "lightthinker"

    def __init__(self, spec: GistSpec):
        self.spec = spec
        self.flags = spec.flags
        self.exclude_continue = spec.exclude_continue

    def ends_thought(self, row: RowState, token: int) -> bool:
        if self.spec.level == "token":
            # training compresses the thinking only (thinkc.gist.layout): stop at "</think>"
            close = self.spec.close_ids
            if close and not row.thinking_closed and tuple(row.generated[-len(close):]) == close:
                row.thinking_closed = True
            return not row.thinking_closed and row.thought_len >= self.spec.step
        return self.spec.trigger_id is not None and token == self.spec.trigger_id

    def block_after(self, row: RowState, token: int, forced: bool) -> list[tuple[int, Role]] | None:
        if not (forced or self.ends_thought(row, token)):
            return None
        s = self.spec
        block = []
        if s.level == "thought" and s.trigger_id is not None and token != s.trigger_id:
            block.append((s.trigger_id, Role.TRIGGER))  # forced end of thought
        block += [(t, Role.INSTR) for t in s.instr_ids]
        block += [(t, Role.CACHE) for t in s.cache_ids]
        if s.output_id is not None:
            block.append((s.output_id, Role.OUTPUT))
        return block
