"""Records -> tokenised training samples (GistSample) for every method, then optional packing.

`sft` uses the plain chat layout: prompt + "<think>\\n{thinking}\\n</think>\\n\\n{answer}" + EOS, labels
on the assistant part only (unless train_on_input). `lightthinker` / `anllm` use the gist layout
builder (thinkc.gist) with the run's GistConfig. All samples carry GistMeta, so one collator and one
mask path serve every method (plain sft metadata is all-causal: the gist rule reduces to causal)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from thinkc.errors import ThinkcError
from thinkc.gist.rule import NEVER, GistMeta, Role
from thinkc.gist.sample import IGNORE_INDEX, GistSample
from thinkc.train.config import TrainConfig


# ---------------------------------------------------------------- records

def load_records(cfg: TrainConfig) -> list:
    """The training records (Record objects or dicts with id/question/thinking/answer[/system])."""
    d = cfg.data
    if d.train == "synth":
        try:
            from thinkc.data.synth import synth_records
        except ImportError as e:
            raise ThinkcError(f"data.train=synth needs thinkc.data.synth ({e})") from None
        opts = dict(d.synth)
        n, seed = int(opts.pop("n", 2000)), int(opts.pop("seed", cfg.train.seed))
        try:
            records = list(synth_records(n, seed, **opts))
        except TypeError as e:
            raise ThinkcError(f"data.synth: {e}") from None
    else:
        records = _read(d.train, d.skip_invalid)
    if d.limit:
        records = records[: d.limit]
    if not records:
        raise ThinkcError(f"data.train: {d.train}: no records")
    return records


def _read(path: str, skip_invalid: bool) -> list:
    try:
        from thinkc.data.schema import read_records
    except ImportError:
        read_records = None
    if read_records is not None:
        return list(read_records(path, skip_invalid=skip_invalid))
    from thinkc.io import iter_jsonl  # schema module not available: check the fields ourselves

    out = []
    for lineno, obj in iter_jsonl(path):
        missing = [k for k in ("question", "thinking", "answer") if not isinstance(obj.get(k), str)]
        if missing:
            if skip_invalid:
                continue
            raise ThinkcError(f"{path}:{lineno}: missing or non-string field {missing[0]!r}")
        out.append(obj)
    return out


def field_of(record: Any, name: str, default=None):
    return record.get(name, default) if isinstance(record, dict) else getattr(record, name, default)


# ---------------------------------------------------------------- plain chat layout (sft)

def prompt_text(record: Any, tokenizer) -> str:
    """The prompt up to the assistant turn (chat template when the tokenizer has one)."""
    messages = []
    system = field_of(record, "system")
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": field_of(record, "question")})
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    sys_part = f"{system}\n\n" if system else ""
    return f"{sys_part}Question: {field_of(record, 'question')}\nAnswer: "


def response_text(record: Any) -> str:
    return f"<think>\n{field_of(record, 'thinking')}\n</think>\n\n{field_of(record, 'answer')}"


def plain_meta(n_prompt: int, n_total: int) -> GistMeta:
    role = torch.full((n_total,), int(Role.ANSWER), dtype=torch.int8)
    role[:n_prompt] = int(Role.PROMPT)
    return GistMeta(role=role, seg=torch.full((n_total,), -1, dtype=torch.int32),
                    doc=torch.zeros(n_total, dtype=torch.int32),
                    expire=torch.full((n_total,), NEVER, dtype=torch.int32))


def plain_sample(record: Any, tokenizer, train_on_input: bool = False) -> GistSample:
    """sft sample: causal metadata, labels on the response (+ EOS)."""
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    p_ids = enc(prompt_text(record, tokenizer))
    r_ids = enc(response_text(record))
    if tokenizer.eos_token_id is None:
        raise ThinkcError("the tokenizer has no EOS token; sft needs one to teach the model to stop")
    r_ids = r_ids + [tokenizer.eos_token_id]
    ids = torch.tensor(p_ids + r_ids, dtype=torch.long)
    labels = ids.clone()
    if not train_on_input:
        labels[: len(p_ids)] = IGNORE_INDEX
    return GistSample(ids, labels, torch.arange(ids.numel()), plain_meta(len(p_ids), ids.numel()))


# ---------------------------------------------------------------- shared post-processing

def truncate(s: GistSample, max_len: int) -> GistSample:
    """A prefix of a gist layout is a valid layout: keys whose [o] was cut off never expire in it."""
    if len(s) <= max_len:
        return s
    m = s.meta
    meta = GistMeta(m.role[:max_len], m.seg[:max_len], m.doc[:max_len], m.expire[:max_len], m.flags)
    return GistSample(s.input_ids[:max_len], s.labels[:max_len], s.position_ids[:max_len], meta)


def pack(samples: list[GistSample], max_len: int, pad_id: int) -> list[GistSample]:
    try:
        from thinkc.gist.packing import pack_samples
    except ImportError as e:
        raise ThinkcError(f"data.packing needs thinkc.gist.packing ({e})") from None
    return pack_samples(samples, max_len, pad_id)


@dataclass
class SampleStats:
    records: int
    samples: int
    truncated: int
    tokens: int
    label_tokens: int


def build_samples(records: list, tokenizer, cfg: TrainConfig,
                  make: Optional[Callable[[Any], GistSample]] = None) -> tuple[list[GistSample], SampleStats]:
    """Tokenise every record (`make` = the gist layout builder for gist methods), truncate, pack."""
    if make is None:
        make = lambda r: plain_sample(r, tokenizer, cfg.data.train_on_input)  # noqa: E731
    out, truncated = [], 0
    for r in records:
        s = make(r)
        if len(s) > cfg.data.max_length:
            truncated += 1
            s = truncate(s, cfg.data.max_length)
        out.append(s)
    if cfg.data.packing:
        out = pack(out, cfg.data.max_length, tokenizer.pad_token_id or 0)
    stats = SampleStats(len(records), len(out), truncated, sum(len(s) for s in out),
                        sum(int((s.labels != IGNORE_INDEX).sum()) for s in out))
    return out, stats


class SampleDataset(torch.utils.data.Dataset):
    def __init__(self, samples: list[GistSample]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> GistSample:
        return self.samples[i]
