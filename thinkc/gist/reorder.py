"""Physical reordering of a training row: stored as [prompt | cache tokens + [o] | thoughts, answer]
per document, computed as if in sequence order.

In sequence order almost every 128 x 128 tile of the gist mask is partial (short thoughts: as many
tiles as causal attention). Grouping the tokens that stay visible for long (prompt, cache tokens and
[o]) ahead of the tokens that expire soon (thoughts) leaves far fewer tiles to compute
(docs/benchmarks.md). Nothing else changes:

- `position_ids` (RoPE) travel with their tokens: every token keeps its logical position;
- `labels` travel with their tokens too (labels[t] is still the target AT token t); the loss needs
  each token's *logical successor*, so the collator hands transformers `shift_labels`
  (`shifted_labels`) instead of letting it shift by one physical position;
- the metadata is permuted and `meta.pos` holds each token's logical index in the row, so the rule
  (thinkc.gist.rule.visible) is evaluated on logical positions: the reordered row's mask is the
  sequence-order mask with rows and columns permuted alike (`reference_mask` and `gist_mask_mod`
  read `pos`; `gist_block_mask` builds its tiles with `reordered_block_mask_tensors`).

Within each group tokens keep their sequence order (stable), and documents of a packed row stay
contiguous runs in their order (padding last), so packing reordered samples equals reordering the
packed row."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from thinkc.errors import ThinkcError
from thinkc.gist.rule import NEVER, GistMeta, Role
from thinkc.gist.sample import IGNORE_INDEX, GistSample

REORDER_SETTINGS = ("auto", True, False)
_FIRST = (Role.PROMPT, Role.CACHE_PLAIN)  # the prompt (plain-prefill cache tokens are prompt rows)
_SECOND = (Role.CACHE, Role.OUTPUT)  # gist blocks: visible to the end of the document


def resolve_reorder(setting, device, uses_gist_mask: bool) -> bool:
    """`auto`: reorder only where the mask is a BlockMask (gist or packed rows on CUDA): the dense
    CPU mask costs the same in any order. true / false force it (true: whenever a gist mask is used)."""
    if setting not in REORDER_SETTINGS:
        raise ThinkcError(f"reorder must be auto, true or false, got {setting!r}")
    if not uses_gist_mask:
        return False
    if setting == "auto":
        return torch.device(device).type == "cuda"
    return bool(setting)


def reorder_permutation(meta: GistMeta, only_where_fewer_tiles: int | None = None) -> torch.Tensor:
    """Physical order of a sequence-order row (1-D metadata): per document run, [prompt | cache
    tokens and [o] | everything else], stable. perm[i] = the logical index stored at physical i.
    With `only_where_fewer_tiles` = a tile size, a document is reordered only when that leaves it
    fewer tiles to compute (short documents often need more: their few tiles fill up), and the row
    stays in sequence order unless it computes fewer tiles as a whole."""
    if meta.pos is not None:
        raise ThinkcError("this row is already reordered")
    role, doc = meta.role.long().flatten(), meta.doc.long().flatten()
    L = role.numel()
    group = torch.full_like(role, 2)
    group[torch.isin(role, torch.tensor([int(r) for r in _FIRST]))] = 0
    group[torch.isin(role, torch.tensor([int(r) for r in _SECOND]))] = 1
    run = torch.zeros_like(doc)
    run[1:] = (doc[1:] != doc[:-1]).long().cumsum(0)
    if only_where_fewer_tiles:
        for r in torch.unique(run).tolist():
            at = (run == r).nonzero().flatten()
            if not _helps(meta, int(at[0]), int(at[-1]) + 1, group, only_where_fewer_tiles):
                group[at] = 0
    perm = torch.sort((run * 3 + group) * L + torch.arange(L), stable=True).indices
    if only_where_fewer_tiles and not _fewer_tiles(meta, perm, only_where_fewer_tiles):
        return torch.arange(L)
    return perm


def _helps(meta: GistMeta, start: int, end: int, group: torch.Tensor, block: int) -> bool:
    """Whether reordering the document meta[start:end] alone leaves it fewer tiles to compute."""
    if int(meta.doc[start]) < 0 or bool((group[start:end] == group[start]).all()):
        return False
    exp = meta.expire[start:end].long()
    one = GistMeta(meta.role[start:end], meta.seg[start:end], meta.doc[start:end],
                   torch.where(exp >= NEVER, exp, exp - start), meta.flags)
    perm = torch.sort(group[start:end] * (end - start) + torch.arange(end - start), stable=True).indices
    return _fewer_tiles(one, perm, block)


def _fewer_tiles(meta: GistMeta, perm: torch.Tensor, block: int) -> bool:
    from thinkc.gist.reorder_tiles import tile_counts

    moved = GistMeta(meta.role[perm], meta.seg[perm], meta.doc[perm], meta.expire[perm], meta.flags, perm)
    return int((tile_counts(moved, block, block) > 0).sum()) < int((tile_counts(meta, block, block) > 0).sum())


def reorder_sample(sample: GistSample, only_where_fewer_tiles: int | None = None) -> GistSample:
    """The same row stored physically reordered: tokens, labels, positions and metadata permuted
    alike, `meta.pos` = each token's logical index (see reorder_permutation for the option)."""
    perm = reorder_permutation(sample.meta, only_where_fewer_tiles)
    m = sample.meta
    meta = GistMeta(m.role[perm], m.seg[perm], m.doc[perm], m.expire[perm], m.flags, perm.clone())
    return GistSample(sample.input_ids[perm], sample.labels[perm], sample.position_ids[perm], meta)


def is_reordered(sample: GistSample) -> bool:
    return sample.meta.pos is not None


def restore_order(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Physical -> sequence order along dim 1 (e.g. logits [B, L, V]; pos [B, L] or [L]):
    out[b, pos[b, i]] = x[b, i]."""
    pos = pos.long()
    if pos.dim() == 1:
        pos = pos.expand(x.shape[0], -1)
    index = pos.reshape(*pos.shape, *[1] * (x.dim() - 2)).expand_as(x)
    return torch.empty_like(x).scatter_(1, index, x)


def shifted_labels(labels: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The target predicted AT each physical token: the label of its logical successor (pos + 1), as
    transformers' one-position shift gives in sequence order (IGNORE_INDEX for the row's last
    logical token). labels / pos: [..., L], pos a permutation of 0..L-1 along the last dim."""
    pos = pos.long()
    logical = torch.empty_like(labels).scatter_(-1, pos, labels)  # labels in sequence order
    logical = F.pad(logical, (0, 1), value=IGNORE_INDEX)
    return logical.gather(-1, pos + 1)


def reordered_block_mask_tensors(meta: GistMeta, block_size: int | tuple[int, int] = 128) -> tuple[torch.Tensor, ...]:
    """(kv_num_blocks, kv_indices, full_kv_num_blocks, full_kv_indices) of a row in any physical
    order (meta.pos; each document a contiguous run), without an L x L mask
    (thinkc.gist.reorder_tiles). Equal to create_block_mask(gist_mask_mod(meta), B, 1, L, L,
    BLOCK_SIZE=block_size)."""
    from thinkc.gist.reorder_tiles import tile_counts

    q_block, kv_block = (block_size, block_size) if isinstance(block_size, int) else block_size
    counts = tile_counts(meta, q_block, kv_block)
    full = q_block * kv_block
    partial_tiles = ((counts > 0) & (counts < full)).to(torch.int32)[:, None]
    full_tiles = (counts == full).to(torch.int32)[:, None]
    return (*_ordered(partial_tiles), *_ordered(full_tiles))


def _ordered(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BlockMask's (num, indices) layout: per row the count, and the stable descending argsort of the 0/1 tiles."""
    num = tiles.sum(-1).to(torch.int32)
    order = torch.argsort(tiles, dim=-1, descending=True, stable=True).to(torch.int32)
    return num.contiguous(), order.contiguous()


def computed_tile_share(samples: list[GistSample], block: int = 128) -> float:
    """Share of the block x block tiles of the given rows (each over its own length) with a visible
    pair: what a block-sparse kernel computes. Rows may be in sequence or reordered order."""
    from thinkc.gist.reorder_tiles import tile_counts

    computed = total = 0
    for s in samples:
        counts = tile_counts(s.meta, block, block)
        computed, total = computed + int((counts > 0).sum()), total + counts.numel()
    return computed / total if total else 0.0


def causal_tile_share(samples: list[GistSample], block: int = 128) -> float:
    """The same share for plain causal attention over the same rows, documents kept apart (what
    packed sft computes: causal inside each document, padding masked)."""
    from thinkc.gist.reorder_tiles import tile_counts

    computed = total = 0
    for s in samples:
        doc = s.meta.doc
        causal = GistMeta(torch.full_like(s.meta.role, int(Role.PROMPT)), torch.full_like(doc, -1), doc,
                          torch.full_like(s.meta.expire, NEVER))
        counts = tile_counts(causal, block, block)
        computed, total = computed + int((counts > 0).sum()), total + counts.numel()
    return computed / total if total else 0.0
