"""Records -> token sequences in the LightThinker gist layout (design.md §2), with the per-token
metadata the attention rule (thinkc.gist.rule) needs. The original's flags map onto GistConfig as in
the table of thinkc/gist/rule.py.

One sample, thought level, aug-wo-pc (the paper's setting):

    P  S_1 <w> [I] C_1 [o]  S_2 <w> [I] C_2 [o] ... S_n <w> [I] C_n [o]  "</think>\\n\\n" answer EOS

P is the chat template (system + user + generation prompt) followed by "<think>\\n"; S_i is the
i-th blank-line-separated thought (the trigger <w> replaces the blank line; the last thought gets
one too); [I] is the optional output_compress_instruction; C_i the n cache tokens. Token level:
every `step` thinking tokens are followed by [I] C_i [o] (no trigger); a final partial chunk is
not compressed (inference must stop counting at "</think>"). AnLLM (anllm=true): S_i "\\n" C_i,
no trigger, no [o], the anchors C_i trained (the model emits them to compress).

`aug` / `recover` also compress the prompt as the original does: every sentence of the system
prompt and of the question is followed by its n cache tokens only (no instruction, no [o]); the
chat template's own text stays plain. prefill_compress=false makes those cache tokens CACHE_PLAIN
(plain causal prefill; rule.py). `recover` appends <|recover|>, the thoughts' own tokens (S_i <w>)
and EOS, positions restarting after the last gist key it sees; `hybrid` adds a second sample that
rebuilds the prompt sentences (build_record_samples). `normal` is plain causal.

Labels (labels[t] is the target AT t; HF shifts): prompt ignored unless train_on_input; S_i, <w>,
answer, EOS and the recovery text trained; I_i, C_i (except AnLLM anchors), [o] and <|recover|>
ignored. So the first token after [o] (or after the last cache token without [o]) is predicted from
that position. Positions run 0..L-1 over the augmented sequence (the recovery restarts). Samples
longer than max_length are trimmed to a prefix (the original cuts too)."""
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
_SYS_SENTINEL = "\x00THINKC_SYSTEM\x00"


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

    def close_plain_prefill(self) -> None:
        """A sample with a plain-prefill prompt but no thought block: the original's mask keeps the
        flags on its last prompt block (rule.py), so that block's cache tokens become CACHE."""
        if int(Role.CACHE_PLAIN) not in self.role or int(Role.CACHE) in self.role:
            return
        last = max(i for i, r in enumerate(self.role) if r == Role.CACHE_PLAIN)
        for i, (r, g) in enumerate(zip(self.role, self.seg)):
            if r == Role.CACHE_PLAIN and g == self.seg[last]:
                self.role[i] = int(Role.CACHE)

    def sample(self, cfg: GistConfig) -> GistSample:
        ids = torch.tensor(self.ids, dtype=torch.long)
        labels = torch.where(torch.tensor(self.trained, dtype=torch.bool), ids, torch.full_like(ids, IGNORE_INDEX))
        role = torch.tensor(self.role, dtype=torch.int8)
        seg = torch.tensor(self.seg, dtype=torch.int32)
        doc = torch.zeros(len(ids), dtype=torch.int32)
        expire = compute_expire(role, seg, doc, exclude_continue=cfg.exclude_continue)
        return GistSample(ids, labels, _positions(role, expire), GistMeta(role, seg, doc, expire, cfg.flags))


def _positions(role: torch.Tensor, expire: torch.Tensor) -> torch.Tensor:
    """0..L-1; a recovery segment restarts at 1 + the last earlier key it can see (the original's
    offset: with every thought recovered, the last [o] + 1)."""
    pos = torch.arange(role.numel(), dtype=torch.long)
    rec = (role == Role.RECOVER).nonzero().flatten()
    if rec.numel():
        start = int(rec[0])
        seen = (expire[:start] >= NEVER).nonzero().flatten()
        offset = int(seen.max()) + 1 if seen.numel() else 0
        pos[start:] = offset + torch.arange(role.numel() - start)
    return pos


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

    def block(self, seg: int) -> None:
        """[<w>] [I_i] C_i [o] closing thought `seg` (AnLLM: C_i only, trained)."""
        if self.cfg.uses_trigger:
            self.seq.add([self.trigger], Role.TRIGGER, seg, True)
        self.seq.add(self.instr, Role.INSTR, seg, False)
        self.seq.add(self.cache, Role.CACHE, seg, self.cfg.anllm)
        if self.output is not None:
            self.seq.add([self.output], Role.OUTPUT, seg, False)

    def new_seg(self) -> int:
        self.next_seg += 1
        return self.next_seg - 1

    def compressed_prompt(self, text: str, train: bool) -> None:
        """Each sentence (token level: `step` tokens) + its n cache tokens, as the original."""
        if self.cfg.level == "thought":
            chunks = [self.encode(s) for s in split_sentences(text)]
        else:
            chunks = token_steps(self.encode(text), self.cfg.step)
        role = Role.CACHE if self.cfg.prefill_compress else Role.CACHE_PLAIN
        for chunk in chunks:
            if chunk:
                seg = self.new_seg()
                self.seq.add(chunk, Role.PROMPT, seg, train)
                self.seq.add(self.cache, role, seg, train and self.cfg.anllm)

    def prompt(self, record) -> None:
        train = self.cfg.train_on_input
        if not self.cfg.compresses_prompt:
            prefix, question, suffix = _prompt_parts(record, self.tok)
            for text in (prefix, question, suffix + THINK_OPEN):
                self.seq.add(self.encode(text), Role.PROMPT, -1, train)
            return
        prefix, system, middle, question, suffix = _prompt_parts(record, self.tok, split_system=True)
        self.seq.add(self.encode(prefix), Role.PROMPT, -1, train)
        self.compressed_prompt(system, train)
        self.seq.add(self.encode(middle), Role.PROMPT, -1, train)
        self.compressed_prompt(question, train)
        self.seq.add(self.encode(suffix + THINK_OPEN), Role.PROMPT, -1, train)

    def thinking(self, thoughts: list[str]) -> None:
        if not self.cfg.compresses:
            self.seq.add(self.encode("\n\n".join(thoughts) + "\n"), Role.THOUGHT, -1, True)
        elif self.cfg.level == "thought":
            for t in thoughts:
                seg = self.new_seg()
                self.seq.add(self.encode(t + "\n" if self.cfg.anllm else t), Role.THOUGHT, seg, True)
                self.block(seg)
        else:
            for chunk in token_steps(self.encode("\n\n".join(thoughts)), self.cfg.step):
                seg = self.new_seg()
                self.seq.add(chunk, Role.THOUGHT, seg, True)
                if len(chunk) == self.cfg.step:  # a final partial chunk is never compressed
                    self.block(seg)

    def answer(self, answer: str) -> None:
        text = THINK_CLOSE + answer
        if self.cfg.compresses and self.cfg.compress_answer:
            paragraphs = split_thoughts(answer) or [""]
            paragraphs[0] = THINK_CLOSE + paragraphs[0]
            for p in paragraphs[:-1]:
                seg = self.new_seg()
                self.seq.add(self.encode(p + "\n" if self.cfg.anllm else p), Role.THOUGHT, seg, True)
                self.block(seg)
            text = paragraphs[-1]
        self.seq.add(self.encode(text), Role.ANSWER, -1, True)
        self.seq.add([self.eos()], Role.ANSWER, -1, True)

    def recovery(self) -> None:
        """<|recover|> + the own tokens (S_i and its trigger) of the first thoughts that fit in
        max_length - len - 2, in order, + EOS; nothing when not even the first fits (the original)."""
        q = self.seq
        budget = self.cfg.max_length - len(q.ids) - 2
        picked: list[int] = []
        for seg in _closed_thoughts(q):
            body = [i for i, (r, g) in enumerate(zip(q.role, q.seg))
                    if g == seg and r in (Role.THOUGHT, Role.TRIGGER)]
            budget -= len(body)
            if budget < 0:
                break
            picked += body
        if not picked:
            return
        q.add([recover_token_id(self.tok, self.cfg)], Role.RECOVER, -1, False)
        for i in picked:
            q.add([q.ids[i]], Role.RECOVER, q.seg[i], q.trained[i])
        q.add([self.eos()], Role.RECOVER, -1, True)

    def prompt_recovery(self) -> None:
        """hybrid: <|recover|> + every compressed prompt sentence + EOS after the prompt (its own sample)."""
        q = self.seq
        sentences = [t for t, r, g in zip(q.ids, q.role, q.seg) if r == Role.PROMPT and g >= 0]
        q.add([recover_token_id(self.tok, self.cfg)], Role.ANSWER, -1, False)
        q.add(sentences, Role.ANSWER, -1, True)
        q.add([self.eos()], Role.ANSWER, -1, True)

    def eos(self) -> int:
        if self.tok.eos_token_id is None:
            raise ThinkcError("the tokenizer has no eos_token; set one (e.g. <|im_end|> for Qwen, <|eot_id|> for Llama 3)")
        return self.tok.eos_token_id


def _closed_thoughts(q: _Seq) -> list[int]:
    """Segments of thoughts (not prompt sentences) that have their cache tokens, in order."""
    has_cache = {g for r, g in zip(q.role, q.seg) if r == Role.CACHE and g >= 0}
    out: list[int] = []
    for r, g in zip(q.role, q.seg):
        if r == Role.THOUGHT and g in has_cache and g not in out:
            out.append(g)
    return out


def _prompt_parts(record, tokenizer, split_system: bool = False) -> tuple[str, ...]:
    """(text before the question, the question, text after it incl. the generation prompt); with
    split_system: (before the system prompt, system, between, question, after) for prompt compression."""
    question = record if isinstance(record, str) else _field(record, "question")
    if not isinstance(question, str) or not question.strip():
        raise ThinkcError("record has no question text")
    system = None if isinstance(record, str) else _field(record, "system")
    sys_text = _SYS_SENTINEL if split_system and system else system
    if getattr(tokenizer, "chat_template", None):
        msgs = ([{"role": "system", "content": sys_text}] if system else []) + [{"role": "user", "content": _SENTINEL}]
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    else:  # base models without a template: a plain "system / question" prompt
        text = (f"{sys_text}\n\n" if system else "") + _SENTINEL + "\n"
    if text.count(_SENTINEL) != 1 or text.count(_SYS_SENTINEL) > 1:
        raise ThinkcError("the tokenizer's chat template does not place the user message verbatim")
    prefix, suffix = text.split(_SENTINEL)
    if not split_system:
        return prefix, question, suffix
    if sys_text != _SYS_SENTINEL:
        return prefix, "", "", question, suffix
    if prefix.count(_SYS_SENTINEL) != 1:
        raise ThinkcError("the tokenizer's chat template does not place the system message verbatim "
                          "before the question")
    before, middle = prefix.split(_SYS_SENTINEL)
    return before, system, middle, question, suffix


def _main_seq(record, tokenizer, cfg: GistConfig) -> _Seq:
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
        b.recovery()
    b.seq.close_plain_prefill()
    return b.seq


def build_sample(record, tokenizer, cfg: GistConfig) -> GistSample:
    """One record (thinkc.data.schema.Record or a dict with question/thinking/answer[/system]) in
    the gist layout. The tokenizer must already hold the gist tokens (add_gist_tokens). Not trimmed
    (build_samples and the trainer trim to max_length); recover mode fits its recovery into
    cfg.max_length. With `hybrid`, build_record_samples also gives the prompt-recovery sample."""
    return _main_seq(record, tokenizer, cfg).sample(cfg)


def build_record_samples(record, tokenizer, cfg: GistConfig) -> list[GistSample]:
    """The training samples of one record, not trimmed: the layout's sample, and with `hybrid` the
    original's separate prompt-recovery sample (the compressed prompt, then <|recover|> + its
    sentences + EOS, trained)."""
    out = [build_sample(record, tokenizer, cfg)]
    if cfg.hybrid:
        b = _Builder(tokenizer, cfg)
        b.prompt(record)
        b.prompt_recovery()
        b.seq.close_plain_prefill()
        out.append(b.seq.sample(cfg))
    return out


def build_prompt_sample(record_or_question, tokenizer, cfg: GistConfig) -> GistSample:
    """The prompt part of the layout (what inference feeds first), with its metadata: in aug /
    recover mode it already holds the sentences' cache blocks. Its metadata is that of the same
    tokens in a training sample (decoding follows it): with prefill_compress=false the sentences
    expire at its end."""
    b = _Builder(tokenizer, cfg)
    b.prompt(record_or_question)
    return b.seq.sample(cfg)


def build_prompt(record_or_question, tokenizer, cfg: GistConfig) -> list[int]:
    return build_prompt_sample(record_or_question, tokenizer, cfg).input_ids.tolist()


@dataclass
class LayoutStats:
    kept: int
    dropped: int  # longer than cfg.max_length with overlong="drop"
    tokens: int
    trimmed: int = 0  # longer than cfg.max_length, cut to it (overlong="trim", the original's way)


def build_samples(records: Iterable, tokenizer, cfg: GistConfig,
                  overlong: str = "trim") -> tuple[list[GistSample], LayoutStats]:
    """build_record_samples over `records`. Samples longer than cfg.max_length are trimmed to it
    (overlong="trim", as the original) or, the older thinkc way, dropped (overlong="drop")."""
    if overlong not in ("trim", "drop"):
        raise ThinkcError(f"overlong must be 'trim' or 'drop', got {overlong!r}")
    kept, dropped, trimmed = [], 0, 0
    for r in records:
        for s in build_record_samples(r, tokenizer, cfg):
            if len(s) > cfg.max_length:
                if overlong == "drop":
                    dropped += 1
                    continue
                trimmed += 1
                s = s.prefix(cfg.max_length)
            kept.append(s)
    if dropped:
        log.warning("gist layout: dropped %d of %d samples longer than max_length=%d",
                    dropped, dropped + len(kept), cfg.max_length)
    return kept, LayoutStats(len(kept), dropped, sum(len(s) for s in kept), trimmed)


def describe(sample: GistSample, tokenizer, start: int = 0, end: int | None = None) -> str:
    """A readable dump, one token per line: index, position, token, role, seg, expire, label."""
    m = sample.meta
    lines = [f"{'idx':>5} {'pos':>5} {'token':<18} {'role':<11} {'seg':>4} {'expire':>6} label"]
    for t in range(start, len(sample) if end is None else min(end, len(sample))):
        tok = repr(tokenizer.decode([int(sample.input_ids[t])]))[1:-1][:18]
        exp = int(m.expire[t])
        lab = int(sample.labels[t])
        lines.append(f"{t:>5} {int(sample.position_ids[t]):>5} {tok:<18} {Role(int(m.role[t])).name:<11} "
                     f"{int(m.seg[t]):>4} {'-' if exp >= NEVER else exp:>6} {'-' if lab == IGNORE_INDEX else lab}")
    return "\n".join(lines)
