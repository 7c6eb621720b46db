"""`compact_kv`: in-place compaction of a static KV cache (all layers' K and V in one call).

Each row b keeps a sorted list of non-overlapping token ranges [start, end) inside [0, lengths[b]);
kept tokens slide left in order, the freed tail [new_len, old_len) is zeroed, tokens at or beyond
old_len are untouched, and `lengths` becomes the kept totals. Ranges travel as CSR: `ranges` int32
[R, 2] (all rows concatenated) and `offsets` int32 [B+1] (row b owns ranges[offsets[b]:offsets[b+1]]).

Runs torch.ops.thinkc.compact_kv (CUDA kernel or C++) when the extension has one for the caches'
device, else `compact_kv_torch` (sort-based gather + copy). `compact_kv_reference` is the naive
per-row loop the tests compare both against.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

from thinkc.ops._backend import backend

KeepRanges = Sequence[Sequence[tuple[int, int]]]
Keep = Union[KeepRanges, tuple[torch.Tensor, torch.Tensor]]


def ranges_from_keep(keep: KeepRanges, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(ranges int32 [R, 2], offsets int32 [B+1]) from one list of (start, end) pairs per row."""
    flat = [(int(s), int(e)) for row in keep for s, e in row]
    counts = torch.tensor([0] + [len(row) for row in keep], dtype=torch.int32)
    ranges = torch.tensor(flat, dtype=torch.int32).reshape(-1, 2)
    return ranges.to(device), counts.cumsum(0, dtype=torch.int32).to(device)


def ranges_from_keep_mask(keep_mask: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ranges, offsets) of the maximal runs of True in each row of `keep_mask` [B, C] (bool), counting
    only positions < lengths[b]. Same device as the mask."""
    if keep_mask.dim() != 2 or keep_mask.dtype != torch.bool:
        raise ValueError(f"keep_mask must be a bool [B, C] tensor, got {keep_mask.dtype} {tuple(keep_mask.shape)}")
    B, C = keep_mask.shape
    dev = keep_mask.device
    pos = torch.arange(C, device=dev)
    mask = keep_mask & (pos < lengths.to(dev).long()[:, None])
    padded = torch.zeros(B, C + 2, dtype=torch.int8, device=dev)
    padded[:, 1:-1] = mask.to(torch.int8)
    edge = padded[:, 1:] - padded[:, :-1]  # [B, C+1]: +1 at a run start, -1 one past its end
    _, starts = torch.nonzero(edge == 1, as_tuple=True)
    _, ends = torch.nonzero(edge == -1, as_tuple=True)
    counts = (edge == 1).sum(1)
    offsets = torch.zeros(B + 1, dtype=torch.int32, device=dev)
    offsets[1:] = counts.cumsum(0)
    return torch.stack([starts, ends], 1).to(torch.int32).contiguous(), offsets


def _as_csr(keep: Keep, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(keep, tuple) and len(keep) == 2 and all(isinstance(t, torch.Tensor) for t in keep):
        ranges, offsets = keep
    else:
        ranges, offsets = ranges_from_keep(keep, device)
    return ranges.to(device=device, dtype=torch.int32).contiguous(), offsets.to(device=device, dtype=torch.int32).contiguous()


def check_same_buffers(buffers: Sequence[torch.Tensor], op: str, noun: str) -> None:
    """ValueError unless every buffer has buffer 0's shape, dtype and device and is contiguous."""
    first = buffers[0]
    for i, c in enumerate(buffers):
        if c.shape != first.shape or c.dtype != first.dtype or c.device != first.device:
            raise ValueError(f"{op}: {noun} {i} is {c.dtype} {tuple(c.shape)} on {c.device}; {noun} 0 is "
                             f"{first.dtype} {tuple(first.shape)} on {first.device} (all must match)")
        if not c.is_contiguous():
            raise ValueError(f"{op}: {noun} {i} is not contiguous")


def check_compact_args(caches: Sequence[torch.Tensor], ranges: torch.Tensor, offsets: torch.Tensor,
                       lengths: torch.Tensor) -> None:
    """ValueError with the reason when the arguments break the op's contract (reads the ranges: syncs on CUDA)."""
    if len(caches) == 0:
        raise ValueError("compact_kv: caches is empty")
    first = caches[0]
    if first.dim() != 4:
        raise ValueError(f"compact_kv: caches must be [B, H, C, D], got {tuple(first.shape)}")
    check_same_buffers(caches, "compact_kv", "cache")
    B, _, C, _ = first.shape
    if lengths.dtype != torch.int32 or lengths.shape != (B,) or lengths.device != first.device:
        raise ValueError(f"compact_kv: lengths must be int32 [{B}] on {first.device}, got "
                         f"{lengths.dtype} {tuple(lengths.shape)} on {lengths.device}")
    if ranges.dim() != 2 or ranges.shape[1] != 2:
        raise ValueError(f"compact_kv: ranges must be [R, 2], got {tuple(ranges.shape)}")
    if offsets.shape != (B + 1,):
        raise ValueError(f"compact_kv: range offsets must be [B+1] = [{B + 1}], got {tuple(offsets.shape)}")
    r, off, lens = ranges.long().cpu(), offsets.long().cpu(), lengths.long().cpu()
    R = r.shape[0]
    if off[0] != 0 or off[-1] != R or bool((off[1:] < off[:-1]).any()):
        raise ValueError(f"compact_kv: range offsets must rise from 0 to R={R}, got {off.tolist()}")
    bad_len = ((lens < 0) | (lens > C)).nonzero()
    if bad_len.numel():
        b = int(bad_len[0])
        raise ValueError(f"compact_kv: row {b} length {int(lens[b])} outside [0, capacity={C}]")
    if R == 0:
        return
    row = torch.searchsorted(off[1:], torch.arange(R), right=True)
    s, e = r[:, 0], r[:, 1]
    bad = (s < 0) | (e < s) | (e > lens[row])
    prev_end = torch.cat([torch.zeros(1, dtype=torch.long), e[:-1]])
    first_of_row = torch.zeros(R, dtype=torch.bool)
    first_of_row[off[:-1][off[:-1] < off[1:]]] = True
    unsorted = ~first_of_row & (s < prev_end)
    for what, flags in (("outside [0, length)", bad), ("unsorted or overlapping the previous range", unsorted)):
        hit = flags.nonzero()
        if hit.numel():
            i = int(hit[0])
            raise ValueError(f"compact_kv: row {int(row[i])}: range {i} [{int(s[i])}, {int(e[i])}) {what} "
                             f"(length {int(lens[row[i]])})")


def compact_kv(caches: Sequence[torch.Tensor], keep: Keep, lengths: torch.Tensor, check: bool = True) -> None:
    """Compacts every cache in `caches` (same-shape [B, H, C, D]) in place and updates `lengths` (int32 [B]).
    `keep`: per-row lists of (start, end) or a CSR pair (ranges, offsets). `check=False` skips the Python
    validation (it syncs on CUDA); the C++ op still checks on CPU, and the CUDA kernel leaves a row
    with invalid ranges untouched instead of raising."""
    caches = list(caches)
    if not caches:
        raise ValueError("compact_kv: caches is empty")
    ranges, offsets = _as_csr(keep, caches[0].device)
    if check:
        check_compact_args(caches, ranges, offsets, lengths)
    if backend("compact_kv", caches[0].device) != "torch":
        torch.ops.thinkc.compact_kv(caches, ranges, offsets, lengths)
    else:
        compact_kv_torch(caches, ranges, offsets, lengths)


def compact_kv_torch(caches: Sequence[torch.Tensor], ranges: torch.Tensor, offsets: torch.Tensor,
                     lengths: torch.Tensor) -> None:
    """Pure-torch version (any device): keep mask from the ranges, stable sort puts kept tokens first,
    one gather + masked copy per cache over the occupied prefix."""
    first = caches[0]
    B, H, C, D = first.shape
    dev = first.device
    span = int(lengths.max()) if B else 0  # occupied prefix; nothing at or beyond it changes
    if span == 0:
        return
    R = ranges.shape[0]
    starts, ends = ranges[:, 0].long(), ranges[:, 1].long()
    row = torch.searchsorted(offsets[1:].long(), torch.arange(R, device=dev), right=True)
    edges = torch.zeros(B, span + 1, dtype=torch.long, device=dev)
    edges.index_put_((row, starts), torch.ones_like(starts), accumulate=True)
    edges.index_put_((row, ends), -torch.ones_like(ends), accumulate=True)
    keep = edges.cumsum(1)[:, :span] > 0
    new_len = keep.sum(1)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept positions first, in order
    pos = torch.arange(span, device=dev)
    kept = (pos < new_len[:, None])[:, None, :, None]
    freed = (pos < lengths.long()[:, None])[:, None, :, None]
    index = order[:, None, :, None].expand(B, H, span, D)
    for cache in caches:
        window = cache[:, :, :span]
        moved = window.gather(2, index)
        window.copy_(torch.where(kept, moved, torch.where(freed, torch.zeros((), dtype=cache.dtype, device=dev), window)))
    lengths.copy_(new_len.to(torch.int32))


def compact_kv_reference(caches: Sequence[torch.Tensor], ranges: torch.Tensor, offsets: torch.Tensor,
                         lengths: torch.Tensor) -> None:
    """Naive per-row loop (tests only): concatenates the kept slices and writes them back."""
    r, off = ranges.tolist(), offsets.tolist()
    for b in range(lengths.shape[0]):
        old = int(lengths[b])
        row_ranges = r[off[b]:off[b + 1]]
        new = sum(e - s for s, e in row_ranges)
        for cache in caches:
            parts = [cache[b, :, s:e].clone() for s, e in row_ranges]
            if parts:
                cache[b, :, :new] = torch.cat(parts, dim=1)
            cache[b, :, new:old] = 0
        lengths[b] = new
