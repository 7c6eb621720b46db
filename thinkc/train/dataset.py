"""Records -> tokenised training samples (GistSample) for every method, then optional packing.

Every method goes through the gist layout builder (thinkc.gist.layout): `sft` in `normal` mode (plain
chat, labels on the assistant part unless train_on_input), `lightthinker` / `anllm` with the run's
GistConfig. All samples carry GistMeta, so one collator and one mask path serve every method
(normal-mode metadata is all-causal: the gist rule reduces to causal attention)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from thinkc.errors import ThinkcError
from thinkc.gist.rule import GistMeta
from thinkc.gist.sample import IGNORE_INDEX, GistSample
from thinkc.train.config import TrainConfig, train_files


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
        except (TypeError, ValueError) as e:  # unknown option or bad range
            raise ThinkcError(f"data.synth: {e}") from None
    else:
        records = [r for f in train_files(d) for r in _read(f, d.skip_invalid)]
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


# ---------------------------------------------------------------- layouts

def sample_builder(tokenizer, gist_config) -> Callable[[Any], list[GistSample]]:
    """record -> its GistSamples (one; two with the gist config's `hybrid`). sft uses the gist layout
    builder in `normal` mode (plain chat: prompt + "<think>\\n" thoughts "</think>\\n\\n" answer EOS,
    causal metadata), so every method shares one tokenisation path and one prompt format (the one
    `thinkc infer` uses)."""
    from thinkc.gist.layout import build_record_samples

    return lambda r: build_record_samples(r, tokenizer, gist_config)


def run_gist_config(cfg: TrainConfig):
    """The run's GistConfig (lightthinker / anllm): the named config with the run's row length (recover
    mode fits its recovery segment into it, the original's budget) and data.train_on_input."""
    from thinkc.gist.config import GistConfig

    gcfg = GistConfig.load(cfg.gist_config_name)
    return gcfg.replace(train_on_input=cfg.data.train_on_input or gcfg.train_on_input, max_length=cfg.data.max_length)


def sft_gist_config(cfg: TrainConfig):
    from thinkc.gist.config import GistConfig

    return GistConfig(mode="normal", train_on_input=cfg.data.train_on_input, max_length=cfg.data.max_length)


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
    truncated: int  # over data.max_length: cut (or dropped with data.overlong=drop)
    tokens: int
    label_tokens: int


def build_samples(records: list, tokenizer, cfg: TrainConfig, make: Callable[[Any], Any],
                  reorder: bool = False) -> tuple[list[GistSample], SampleStats]:
    """Tokenise every record with `make` (a sample or a list of them), cut or drop over-long samples
    (data.overlong), pack; with `reorder`, store the rows physically reordered (thinkc.gist.reorder:
    [prompt | cache tokens + [o] | thoughts] per document, logical positions and labels kept), each
    document only where that leaves fewer REORDER_TILE-token tiles to compute."""
    out, truncated = [], 0
    for s in (s for r in records for s in _as_list(make(r))):
        if len(s) > cfg.data.max_length:
            truncated += 1
            if cfg.data.overlong == "drop":
                continue
            s = truncate(s, cfg.data.max_length)
        out.append(s)
    if not out:
        raise ThinkcError(f"every sample is longer than data.max_length={cfg.data.max_length} (data.overlong=drop)")
    if cfg.data.packing:
        out = pack(out, cfg.data.max_length, tokenizer.pad_token_id or 0)
    if reorder:
        from thinkc.gist.reorder import reorder_sample

        out = [reorder_sample(s, only_where_fewer_tiles=REORDER_TILE) for s in out]
    stats = SampleStats(len(records), len(out), truncated, sum(len(s) for s in out),
                        sum(int((s.labels != IGNORE_INDEX).sum()) for s in out))
    return out, stats


def _as_list(made) -> list:
    return made if isinstance(made, list) else [made]


REORDER_TILE = 128  # FlexAttention's tile (the BlockMask's block size in thinkc.models.patch)


class SampleDataset(torch.utils.data.Dataset):
    def __init__(self, samples: list[GistSample]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> GistSample:
        return self.samples[i]


# ---------------------------------------------------------------- thinkc train --check

def tile_shares(cfg: TrainConfig, records: list, block: int = 128, rows: int = 64) -> Optional[dict]:
    """The share of block x block attention tiles a block-sparse kernel computes on the first `rows`
    training rows: as laid out, physically reordered as data.reorder does it (each document where it
    helps), every document reordered, and plain causal (per document when packed). Loads the
    tokenizer, not the model. None when the run uses no gist mask (unpacked sft: plain causal)."""
    if not (cfg.uses_gist or cfg.data.packing):
        return None
    from thinkc.gist.reorder import causal_tile_share, computed_tile_share, reorder_sample

    tokenizer = _tokenizer(cfg)
    if cfg.uses_gist:
        from thinkc.gist.tokens import add_gist_tokens

        gcfg = run_gist_config(cfg)
        add_gist_tokens(tokenizer, None, gcfg)
        make = sample_builder(tokenizer, gcfg)
    else:
        make = sample_builder(tokenizer, sft_gist_config(cfg))
    samples = build_samples(records[:rows], tokenizer, cfg, make)[0][:rows]
    return {"rows": len(samples), "block": block, "as_laid_out": computed_tile_share(samples, block),
            "reordered": computed_tile_share([reorder_sample(s, block) for s in samples], block),
            "every_doc_reordered": computed_tile_share([reorder_sample(s) for s in samples], block),
            "causal": causal_tile_share(samples, block)}


def _tokenizer(cfg: TrainConfig):
    m = cfg.model
    if m.init == "tiny":
        from thinkc.models.tokenizer import tiny_tokenizer

        return tiny_tokenizer(m.vocab_size)
    from thinkc.models.loading import load_tokenizer

    tokenizer = load_tokenizer(m.name)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
