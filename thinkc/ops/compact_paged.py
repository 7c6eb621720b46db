"""`compact_kv_paged`: in-place compaction of a paged KV pool (all layers' K and V in one call).

Layout (torch's experimental PagedAttention layout, the one thinkc/infer/pool.py uses): every buffer
is a contiguous [1, H, P, D] tensor with P = n_pages * page_size, physical page p owning slots
[p * page_size, (p + 1) * page_size) of dim 2; `block_table` int32 [B, max_pages] maps row b's
logical token j to slot block_table[b, j // page_size] * page_size + j % page_size. Entries past the
pages a row uses for tokens [0, lengths[b]) are arbitrary and never read.

`keep` and `lengths` are exactly compact_kv's, in logical token indices: kept tokens slide left in
logical order, logical slots [new_len, old_len) are zeroed (the caller may then hand whole tail pages
back to a free list), logical tokens at or beyond old_len are untouched, `lengths` becomes the kept
totals. Rows never share pages, so rows are independent.

Runs torch.ops.thinkc.compact_kv_paged (CUDA kernel or C++) when the extension has one for the
buffers' device, else `compact_kv_paged_torch` (one gather of every moving token, then one
index_copy_). `compact_kv_paged_reference` is the naive per-row loop the tests compare both against.
"""
from __future__ import annotations

import operator
from typing import Sequence

import torch

from thinkc.ops._backend import backend
from thinkc.ops.compact import Keep, _as_csr, check_compact_args, check_same_buffers

_NAME = "compact_kv_paged"


def _is_int(x) -> bool:
    try:
        operator.index(x)
    except TypeError:
        return False
    return True


def _check_buffers(buffers: Sequence[torch.Tensor], page_size: int) -> None:
    if len(buffers) == 0:
        raise ValueError(f"{_NAME}: buffers is empty")
    first = buffers[0]
    if first.dim() != 4 or first.shape[0] != 1:
        raise ValueError(f"{_NAME}: buffers must be [1, H, n_pages * page_size, D], got {tuple(first.shape)}")
    check_same_buffers(buffers, _NAME, "buffer")
    if isinstance(page_size, bool) or not _is_int(page_size) or page_size < 1:
        raise ValueError(f"{_NAME}: page_size must be an int >= 1, got {page_size!r}")
    if first.shape[2] % page_size:
        raise ValueError(f"{_NAME}: buffer slots P={first.shape[2]} are not a whole number of pages "
                         f"of page_size={page_size}")


def _check_pages(block_table: torch.Tensor, page_size: int, lengths: torch.Tensor, n_pages: int) -> None:
    """Every page a row uses for tokens [0, lengths[b]) is in [0, n_pages) and used once in all."""
    table, lens = block_table.long().cpu(), lengths.long().cpu()
    used = (lens + page_size - 1) // page_size
    mask = torch.arange(table.shape[1]) < used[:, None]
    rows, cols = mask.nonzero(as_tuple=True)
    pages = table[rows, cols]
    bad = ((pages < 0) | (pages >= n_pages)).nonzero()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(f"{_NAME}: row {int(rows[i])}: block_table[{int(rows[i])}, {int(cols[i])}] = page "
                         f"{int(pages[i])} outside [0, n_pages={n_pages})")
    order = torch.argsort(pages, stable=True)
    same = (pages[order][1:] == pages[order][:-1]).nonzero()
    if same.numel():
        a, b = order[int(same[0])], order[int(same[0]) + 1]
        raise ValueError(f"{_NAME}: page {int(pages[a])} is used twice: block_table[{int(rows[a])}, {int(cols[a])}] "
                         f"and block_table[{int(rows[b])}, {int(cols[b])}] (a page belongs to one row, once)")


def check_compact_paged_args(buffers: Sequence[torch.Tensor], block_table: torch.Tensor, page_size: int,
                             ranges: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor) -> None:
    """ValueError with the reason when the arguments break the op's contract (reads the ranges and the
    block table: syncs on CUDA)."""
    _check_buffers(buffers, page_size)
    first = buffers[0]
    if block_table.dtype != torch.int32 or block_table.dim() != 2 or block_table.device != first.device:
        raise ValueError(f"{_NAME}: block_table must be int32 [B, max_pages] on {first.device}, got "
                         f"{block_table.dtype} {tuple(block_table.shape)} on {block_table.device}")
    B, max_pages = block_table.shape
    # The logical rows are a [B, ., max_pages * page_size, .] cache: compact_kv's rules, on a no-element stand-in.
    logical = torch.empty(B, 0, max_pages * page_size, 0, dtype=first.dtype, device=first.device)
    try:
        check_compact_args([logical], ranges, offsets, lengths)
    except ValueError as e:
        msg = str(e).replace("compact_kv:", f"{_NAME}:", 1).replace("capacity=", "capacity=max_pages * page_size=")
        raise ValueError(msg) from None
    _check_pages(block_table, page_size, lengths, first.shape[2] // page_size)


def compact_kv_paged(buffers: Sequence[torch.Tensor], block_table: torch.Tensor, page_size: int, keep: Keep,
                     lengths: torch.Tensor, check: bool = True) -> None:
    """Compacts every buffer in `buffers` (same-shape [1, H, n_pages * page_size, D]) in place through
    `block_table` (int32 [B, max_pages]) and updates `lengths` (int32 [B]). `keep`: per-row lists of
    (start, end) or a CSR pair (ranges, offsets), in logical token indices. `check=False` skips the
    Python validation (it syncs on CUDA); the C++ op still checks on CPU, and the CUDA kernel leaves a
    row with invalid ranges / length / page numbers untouched instead of raising (it does not detect
    a page used twice)."""
    buffers = list(buffers)
    if not buffers:
        raise ValueError(f"{_NAME}: buffers is empty")
    ranges, offsets = _as_csr(keep, buffers[0].device)
    if check:
        check_compact_paged_args(buffers, block_table, page_size, ranges, offsets, lengths)
    table = block_table.contiguous()
    if backend(_NAME, buffers[0].device) != "torch":
        torch.ops.thinkc.compact_kv_paged(buffers, table, int(page_size), ranges, offsets, lengths)
    else:
        compact_kv_paged_torch(buffers, table, int(page_size), ranges, offsets, lengths)


def _expand(starts: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(segment, position) of every element of the segments [starts[i], starts[i] + counts[i]), in order."""
    seg = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    first = counts.cumsum(0) - counts  # exclusive prefix: where each segment starts in the output
    pos = starts[seg] + torch.arange(seg.numel(), device=counts.device) - first[seg]
    return seg, pos


def _slots(block_table: torch.Tensor, page_size: int, row: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Physical slots of logical tokens j of rows `row` (both long, same shape)."""
    return block_table[row, j // page_size].long() * page_size + j % page_size


def compact_kv_paged_torch(buffers: Sequence[torch.Tensor], block_table: torch.Tensor, page_size: int,
                           ranges: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor) -> None:
    """Pure-torch version (any device, no per-row loop): for every kept token its source and destination
    slot; all sources are gathered before any write (index_copy_), so the in-row overlap of left slides
    is harmless; then the freed logical tails are zeroed."""
    dev = buffers[0].device
    B = block_table.shape[0]
    if B == 0:
        return
    R = ranges.shape[0]
    starts, ends = ranges[:, 0].long(), ranges[:, 1].long()
    range_row = torch.searchsorted(offsets[1:].long(), torch.arange(R, device=dev), right=True)
    seg, src = _expand(starts, ends - starts)  # kept tokens, row-major and in logical order
    row = range_row[seg]
    new_len = torch.zeros(B, dtype=torch.long, device=dev).index_add_(0, range_row, ends - starts)
    dst = torch.arange(src.numel(), device=dev) - (new_len.cumsum(0) - new_len)[row]  # rank inside the row
    moving = dst != src  # the kept prefix stays where it is
    row, src, dst = row[moving], src[moving], dst[moving]
    src_slots, dst_slots = _slots(block_table, page_size, row, src), _slots(block_table, page_size, row, dst)
    freed_row, freed = _expand(new_len, lengths.long() - new_len)
    freed_slots = _slots(block_table, page_size, freed_row, freed)
    for buf in buffers:
        heads = buf[0]  # [H, P, D] view
        heads.index_copy_(1, dst_slots, heads.index_select(1, src_slots))
        heads.index_fill_(1, freed_slots, 0)
    lengths.copy_(new_len.to(torch.int32))


def compact_kv_paged_reference(buffers: Sequence[torch.Tensor], block_table: torch.Tensor, page_size: int,
                               ranges: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor) -> None:
    """Naive per-row loop (tests only): gathers the row's logical tokens through the block table,
    concatenates the kept slices, zero-pads to the old length and scatters back."""
    r, off, table = ranges.tolist(), offsets.tolist(), block_table.tolist()
    for b in range(block_table.shape[0]):
        old = int(lengths[b])
        slots = torch.tensor([table[b][j // page_size] * page_size + j % page_size for j in range(old)],
                             dtype=torch.long, device=buffers[0].device)
        row_ranges = r[off[b]:off[b + 1]]
        new = sum(e - s for s, e in row_ranges)
        for buf in buffers:
            logical = buf[0][:, slots].clone()  # [H, old, D]
            out = torch.zeros_like(logical)
            if row_ranges:
                out[:, :new] = torch.cat([logical[:, s:e] for s, e in row_ranges], dim=1)
            buf[0][:, slots] = out
        lengths[b] = new
