"""Records -> token sequences in the LightThinker gist layout (design.md §2), with the per-token
metadata the attention rule (thinkc.gist.rule) needs.

One sample, thought level, aug-wo-pc (the paper's setting):

    P  S_1 <w> [I] C_1 [o]  S_2 <w> [I] C_2 [o] ... S_n <w> [I] C_n [o]  "</think>\\n\\n" answer EOS

P is the chat template (system + user + generation prompt) followed by "<think>\\n"; S_i is the
i-th blank-line-separated thought (the trigger <w> replaces the blank line; the last thought gets
one too); [I] is the optional output_compress_instruction; C_i the n cache tokens. Token level:
every `step` thinking tokens are followed by [I] C_i [o] (no trigger); a final partial chunk is
not compressed (inference must stop counting at "</think>"). `aug`/`recover` also compress the question sentence by
sentence (role PROMPT with seg >= 0, no trigger); `recover` appends <|recover|> and the thoughts
again (the question too when `hybrid`), trained from the C/[o] blocks; `normal` is plain causal.

Labels (labels[t] is the target AT t; HF shifts): prompt ignored unless train_on_input; S_i, <w>,
answer, EOS and the recovery text trained; I_i, C_i, [o] and <|recover|> ignored. So the first
token after [o] (or after the last cache token without [o]) is predicted from that position.
Positions run 0..L-1 over the whole augmented sequence."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable

import torch

from thinkc.errors import ThinkcError
from thinkc.gist.config import GistConfig
from thinkc.gist.rule import NEVER, GistMeta, Role, compute_expire
from thinkc.gist.sample import IGNORE_INDEX, GistSample
from thinkc.data.segment import split_thoughts, token_steps
from thinkc.gist.tokens import add_gist_tokens, gist_token_ids, recover_token_id  # noqa: F401 (re-export)

log = logging.getLogger("thinkc")

THINK_OPEN = "<think>\n"
THINK_CLOSE = "</think>\n\n"
_SENTINEL = "\x00THINKC_QUESTION\x00"


# ---------------------------------------------------------------- text splitting

def split_sentences(text: str) -> list[str]:
    """Sentences for prompt compression; each keeps its trailing whitespace, so ''.join == text."""
    out, start = [], 0
    for m in re.finditer(r"[.!?]+\s+|\n+", text):
        out.append(text[start:m.end()])
        start = m.end()
    if start < len(text):
        out.append(text[start:])
    return [s for s in out if s]


def _field(record: Any, name: str, default=None):
    value = record.get(name, default) if isinstance(record, dict) else getattr(record, name, default)
    return default if value is None else value


# ---------------------------------------------------------------- the builder

class _Seq:
    """Accumulates tokens with their role, segment and whether they carry a label."""

    def __init__(self):
        self.ids: list[int] = []
        self.role: list[int] = []
        self.seg: list[int] = []
        self.trained: list[bool] = []

    def add(self, ids: Iterable[int], role: Role, seg: int, trained: bool) -> None:
        ids = list(ids)
        self.ids += ids
        self.role += [int(role)] * len(ids)
        self.seg += [seg] * len(ids)
        self.trained += [trained] * len(ids)

    def sample(self, cfg: GistConfig) -> GistSample:
        ids = torch.tensor(self.ids, dtype=torch.long)
        labels = torch.where(torch.tensor(self.trained, dtype=torch.bool), ids, torch.full_like(ids, IGNORE_INDEX))
        role = torch.tensor(self.role, dtype=torch.int8)
        seg = torch.tensor(self.seg, dtype=torch.int32)
        doc = torch.zeros(len(ids), dtype=torch.int32)
        expire = compute_expire(role, seg, doc, exclude_continue=cfg.exclude_continue,
                                prefill_compress=cfg.prefill_compress)
        return GistSample(ids, labels, torch.arange(len(ids), dtype=torch.long),
                          GistMeta(role, seg, doc, expire, cfg.flags))


class _Builder:
    def __init__(self, tokenizer, cfg: GistConfig):
        self.tok, self.cfg = tokenizer, cfg
        self.seq = _Seq()
        self.next_seg = 0
        if cfg.compresses:
            self.trigger, self.cache, self.output = gist_token_ids(tokenizer, cfg)
            self.instr = self.encode(cfg.output_compress_instruction) if cfg.output_compress_instruction else []

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False) if text else []

    def block(self, seg: int, trigger: bool) -> None:
        """[<w>] [I_i] C_i [o] closing segment `seg`."""
        if trigger:
            self.seq.add([self.trigger], Role.TRIGGER, seg, True)
        self.seq.add(self.instr, Role.INSTR, seg, False)
        self.seq.add(self.cache, Role.CACHE, seg, False)
        if self.output is not None:
            self.seq.add([self.output], Role.OUTPUT, seg, False)

    def new_seg(self) -> int:
        self.next_seg += 1
        return self.next_seg - 1

    def prompt(self, record) -> None:
        prefix, question, suffix = _prompt_parts(record, self.tok)
        train = self.cfg.train_on_input
        self.seq.add(self.encode(prefix), Role.PROMPT, -1, train)
        if self.cfg.compresses_prompt:
            if self.cfg.level == "thought":
                chunks = [self.encode(s) for s in split_sentences(question)]
            else:
                ids = self.encode(question)
                chunks = token_steps(ids, self.cfg.step)
            for chunk in chunks:
                if chunk:
                    seg = self.new_seg()
                    self.seq.add(chunk, Role.PROMPT, seg, train)
                    self.block(seg, trigger=False)
        else:
            self.seq.add(self.encode(question), Role.PROMPT, -1, train)
        self.seq.add(self.encode(suffix + THINK_OPEN), Role.PROMPT, -1, train)

    def thinking(self, thoughts: list[str]) -> None:
        if not self.cfg.compresses:
            self.seq.add(self.encode("\n\n".join(thoughts) + "\n"), Role.THOUGHT, -1, True)
        elif self.cfg.level == "thought":
            for t in thoughts:
                seg = self.new_seg()
                self.seq.add(self.encode(t), Role.THOUGHT, seg, True)
                self.block(seg, trigger=True)
        else:
            for chunk in token_steps(self.encode("\n\n".join(thoughts)), self.cfg.step):
                seg = self.new_seg()
                self.seq.add(chunk, Role.THOUGHT, seg, True)
                if len(chunk) == self.cfg.step:  # a final partial chunk is never compressed
                    self.block(seg, trigger=False)

    def answer(self, answer: str) -> None:
        text = THINK_CLOSE + answer
        if self.cfg.compresses and self.cfg.compress_answer:
            paragraphs = split_thoughts(answer) or [""]
            paragraphs[0] = THINK_CLOSE + paragraphs[0]
            for p in paragraphs[:-1]:
                seg = self.new_seg()
                self.seq.add(self.encode(p), Role.THOUGHT, seg, True)
                self.block(seg, trigger=True)
            text = paragraphs[-1]
        self.seq.add(self.encode(text), Role.ANSWER, -1, True)
        self.seq.add([self.eos()], Role.ANSWER, -1, True)

    def recovery(self, question: str, thoughts: list[str]) -> None:
        text = "\n\n".join(([question.strip()] if self.cfg.hybrid else []) + thoughts)
        self.seq.add([recover_token_id(self.tok, self.cfg)], Role.ANSWER, -1, False)
        self.seq.add(self.encode(text), Role.ANSWER, -1, True)
        self.seq.add([self.eos()], Role.ANSWER, -1, True)

    def eos(self) -> int:
        if self.tok.eos_token_id is None:
            raise ThinkcError("the tokenizer has no eos_token; set one (e.g. <|im_end|> for Qwen, <|eot_id|> for Llama 3)")
        return self.tok.eos_token_id


def _prompt_parts(record, tokenizer) -> tuple[str, str, str]:
    """(text before the question, the question, text after it incl. the generation prompt)."""
    question = record if isinstance(record, str) else _field(record, "question")
    if not isinstance(question, str) or not question.strip():
        raise ThinkcError("record has no question text")
    system = None if isinstance(record, str) else _field(record, "system")
    if getattr(tokenizer, "chat_template", None):
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": _SENTINEL}]
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    else:  # base models without a template: a plain "system / question" prompt
        text = (f"{system}\n\n" if system else "") + _SENTINEL + "\n"
    if text.count(_SENTINEL) != 1:
        raise ThinkcError("the tokenizer's chat template does not place the user message verbatim")
    prefix, suffix = text.split(_SENTINEL)
    return prefix, question, suffix


def build_sample(record, tokenizer, cfg: GistConfig) -> GistSample:
    """One record (thinkc.data.schema.Record or a dict with question/thinking/answer[/system]) in
    the gist layout. The tokenizer must already hold the gist tokens (add_gist_tokens)."""
    thinking, answer = _field(record, "thinking"), _field(record, "answer")
    if not isinstance(thinking, str) or not isinstance(answer, str):
        raise ThinkcError("record needs string fields 'thinking' and 'answer'")
    thoughts = split_thoughts(thinking)
    if not thoughts:
        raise ThinkcError("record has an empty 'thinking'")
    b = _Builder(tokenizer, cfg)
    b.prompt(record)
    b.thinking(thoughts)
    b.answer(answer.strip())
    if cfg.mode == "recover":
        b.recovery(_field(record, "question"), thoughts)
    return b.seq.sample(cfg)


def build_prompt_sample(record_or_question, tokenizer, cfg: GistConfig) -> GistSample:
    """The prompt part of the layout (what inference feeds first), with its metadata: in aug /
    recover mode it already holds the question's C/[o] blocks."""
    b = _Builder(tokenizer, cfg)
    b.prompt(record_or_question)
    return b.seq.sample(cfg)


def build_prompt(record_or_question, tokenizer, cfg: GistConfig) -> list[int]:
    return build_prompt_sample(record_or_question, tokenizer, cfg).input_ids.tolist()


@dataclass
class LayoutStats:
    kept: int
    dropped: int  # longer than cfg.max_length (never cut: a cut could split a block)
    tokens: int


def build_samples(records: Iterable, tokenizer, cfg: GistConfig) -> tuple[list[GistSample], LayoutStats]:
    """build_sample over `records`, dropping (and counting, with one warning) samples longer than
    cfg.max_length."""
    kept, dropped = [], 0
    for r in records:
        s = build_sample(r, tokenizer, cfg)
        if len(s) > cfg.max_length:
            dropped += 1
        else:
            kept.append(s)
    if dropped:
        log.warning("gist layout: dropped %d of %d samples longer than max_length=%d",
                    dropped, dropped + len(kept), cfg.max_length)
    return kept, LayoutStats(len(kept), dropped, sum(len(s) for s in kept))


def describe(sample: GistSample, tokenizer, start: int = 0, end: int | None = None) -> str:
    """A readable dump, one token per line: index, token, role, seg, expire, label."""
    m = sample.meta
    lines = [f"{'idx':>5} {'token':<18} {'role':<8} {'seg':>4} {'expire':>6} label"]
    for t in range(start, len(sample) if end is None else min(end, len(sample))):
        tok = repr(tokenizer.decode([int(sample.input_ids[t])]))[1:-1][:18]
        exp = int(m.expire[t])
        lab = int(sample.labels[t])
        lines.append(f"{t:>5} {tok:<18} {Role(int(m.role[t])).name:<8} {int(m.seg[t]):>4} "
                     f"{'-' if exp >= NEVER else exp:>6} {'-' if lab == IGNORE_INDEX else lab}")
    return "\n".join(lines)
