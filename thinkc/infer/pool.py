"""The KV pool: fixed-size pages of one preallocated buffer per layer, a block table per row
(design.md §4; the layout of torch's nn/attention/experimental/_paged_attention.py, the bookkeeping
of vLLM's block pool: a free list, pages taken as a row grows, tail pages returned when it shrinks).

    pool = PagedKVCache.for_model(model, rows=64, kv_budget=4800, page_size=16)
    pool.pages.ensure(row, n_tokens)      # host: take pages so the row can hold n_tokens (False: pool dry)
    ... the engine writes / attends through set_write + the model's forward (as StaticGistCache) ...
    pool.compact(ranges, offsets)         # kept keys slide left inside the row's pages (compact_kv_paged)
    pool.pages.shrink(row, new_length)    # whole tail pages go back to the free list

Every layer's K and V is one contiguous [1, H, (n_pages + 1) * page_size, D] buffer: physical page p
owns slots [p * page_size, (p + 1) * page_size). Page n_pages is the *null page*, outside the budget:
unallocated block-table entries point at it, so a padding write (a row that does not feed this step,
a prefill chunk's tail) lands there and a padding read sees only masked garbage. Row b's logical
token j lives at block_table[b, j // page_size] * page_size + j % page_size. The model sees the
rows' logical keys [b, H, kv_len, D] gathered through the block table (SDPA takes them with the
engine's rule mask unchanged), so every policy, the recording and the equivalence tests run on the
pool as on the static cache. A freed page is zeroed by the compaction that frees it; pages handed to a
new row are never visible before it writes them (the rule masks keys at or past a row's length).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from thinkc.errors import ThinkcError
from thinkc.infer.cache import StaticGistCache, kv_shape


ATTENTION_MODES = ("gather", "flex", "kernel")


def default_attention(device) -> str:
    """flex on CUDA; on CPU thinkc's paged-attention op when the extension has it, else gather + SDPA."""
    if torch.device(device).type == "cuda":
        return "flex"
    from thinkc.ops._backend import backend

    try:
        return "kernel" if backend("paged_attention", "cpu") == "cpp" else "gather"
    except Exception:  # an extension built before the op existed
        return "gather"


def pages_for(n_tokens: int, page_size: int) -> int:
    return -(-int(n_tokens) // page_size)


class PagePool:
    """Page allocator: a host free list and per-row page lists, mirrored into a device block table."""

    def __init__(self, n_pages: int, page_size: int, rows: int, max_pages: int, device):
        if n_pages < 1 or page_size < 1:
            raise ThinkcError(f"KV pool: need at least one page of at least one token (pages={n_pages}, "
                              f"page size={page_size})")
        self.n_pages, self.page_size, self.null = int(n_pages), int(page_size), int(n_pages)
        self.free = list(range(self.n_pages - 1, -1, -1))  # a stack: the lowest page goes first
        self.owned: list[list[int]] = [[] for _ in range(rows)]
        self.table = torch.full((rows, max(1, max_pages)), self.null, dtype=torch.int32, device=device)
        self.logical = torch.full((self.n_pages + 1,), -1, dtype=torch.int32, device=device)  # page's index in its row
        self.peak_used = 0

    @property
    def used(self) -> int:
        return self.n_pages - len(self.free)

    @property
    def max_pages(self) -> int:
        return self.table.shape[1]

    def need(self, row: int, n_tokens: int) -> int:
        """Pages `row` still has to take to hold n_tokens."""
        return max(0, pages_for(n_tokens, self.page_size) - len(self.owned[row]))

    def ensure(self, row: int, n_tokens: int) -> bool:
        """Take pages until `row` holds n_tokens; False (and nothing taken) when the pool is short."""
        k = self.need(row, n_tokens)
        if k == 0:
            return True
        if k > len(self.free):
            return False
        have = len(self.owned[row])
        if have + k > self.max_pages:
            self._widen(have + k)
        new = [self.free.pop() for _ in range(k)]
        self.owned[row].extend(new)
        dev = self.table.device
        new_t = torch.tensor(new, dtype=torch.int32, device=dev)
        self.table[row, have:have + k] = new_t
        self.logical[new_t.long()] = torch.arange(have, have + k, dtype=torch.int32, device=dev)
        self.peak_used = max(self.peak_used, self.used)
        return True

    def shrink(self, row: int, n_tokens: int) -> int:
        """Return the pages past what n_tokens need to the free list; the number returned."""
        keep = pages_for(n_tokens, self.page_size)
        tail = self.owned[row][keep:]
        if tail:
            del self.owned[row][keep:]
            self.table[row, keep:keep + len(tail)] = self.null
            self.logical[torch.tensor(tail, device=self.logical.device)] = -1
            self.free.extend(reversed(tail))
        return len(tail)

    def release(self, row: int) -> int:
        return self.shrink(row, 0)

    def _widen(self, max_pages: int) -> None:
        old = self.table
        self.table = torch.full((old.shape[0], max(max_pages, 2 * old.shape[1])), self.null, dtype=old.dtype,
                                device=old.device)
        self.table[:, :old.shape[1]] = old


@dataclass
class SwappedKV:
    """A preempted row's keys and values on the host: [2 * layers, H, length, D] (K of every layer, then V)."""

    kv: torch.Tensor
    length: int


class PagedKVCache(StaticGistCache):
    """StaticGistCache's interface (lengths, set_write, compact, the transformers Cache API) over a
    page pool. `capacity` is the logical limit of one row; memory is `kv_budget` tokens for all rows."""

    def __init__(self, num_layers: int, rows: int, kv_heads: int, head_dim: int, capacity: int, kv_budget: int,
                 page_size: int = 16, dtype: torch.dtype = torch.float32, device="cpu", attention: str | None = None):
        if kv_budget < page_size:
            raise ThinkcError(f"--kv-budget {kv_budget}: the pool needs at least one page ({page_size} tokens)")
        device = torch.device(device)
        n_pages = int(kv_budget) // int(page_size)
        self.pages = PagePool(n_pages, page_size, rows, pages_for(capacity, page_size), device)
        self.page_size, self.kv_budget = int(page_size), n_pages * int(page_size)
        self.attention = attention or default_attention(device)
        if self.attention not in ATTENTION_MODES:
            raise ThinkcError(f"pool attention {self.attention!r}: choose one of {', '.join(ATTENTION_MODES)}")
        shape = (1, kv_heads, (n_pages + 1) * page_size, head_dim)
        self._init_buffers(shape, num_layers, rows, kv_heads, head_dim, capacity, dtype, device)

    @classmethod
    def for_model(cls, model, rows: int, capacity: int, kv_budget: int, page_size: int = 16,
                  dtype: torch.dtype | None = None, device=None, attention: str | None = None) -> "PagedKVCache":
        layers, kv_heads, head_dim, param = kv_shape(model)
        return cls(layers, rows, kv_heads, head_dim, capacity, kv_budget, page_size, dtype or param.dtype,
                   device or param.device, attention)

    # ---- addressing ----------------------------------------------------------------------------
    def physical(self, rows: torch.Tensor | None, logical: torch.Tensor) -> torch.Tensor:
        """Physical slots of logical indices [b, n] of `rows` (None: all rows)."""
        table = self.pages.table if rows is None else self.pages.table[rows]
        ps = self.page_size
        page = logical // ps
        inside = page < table.shape[1]  # past the table: the null page (set_write widens it first)
        phys = table.long().gather(1, page.clamp(max=table.shape[1] - 1))
        return torch.where(inside, phys, self.pages.null) * ps + logical % ps

    def set_write(self, rows: torch.Tensor | None, index: torch.Tensor, kv_len: int) -> None:
        """As StaticGistCache.set_write: the next forward writes at logical slots `index` [b, q] and
        attends to logical slots [0, kv_len) of `rows`. Slots past a row's pages go to the null page.
        Writes are flat rows of the buffer viewed as [H * P, D]; reads gather whole pages. Both are
        computed once for every layer."""
        if kv_len > self.capacity:
            self._grow_to(kv_len)
        table = self.pages.table if rows is None else self.pages.table[rows]
        n_pg = pages_for(kv_len, self.page_size)
        if n_pg > table.shape[1]:
            self.pages._widen(n_pg)
            table = self.pages.table if rows is None else self.pages.table[rows]
        heads = self._heads()
        dst = (heads[None, :, None] + self.physical(rows, index)[:, None, :]).reshape(-1)  # (b, h, q) order
        # whole pages, (b, page) order: what a gathering forward copies (never with the C++ kernel)
        read = None if self.attention == "kernel" else table[:, :n_pg].reshape(-1)
        self._write = (dst, read, (table.shape[0], n_pg, kv_len))
        self._read_table = table[:, :n_pg]  # what the in-place modes read (thinkc.infer.attention)
        from thinkc.infer.attention import _ACTIVE

        _ACTIVE[0] = self

    def clear_write(self) -> None:
        from thinkc.infer.attention import _ACTIVE

        self._write = None
        _ACTIVE[0] = None

    def _heads(self) -> torch.Tensor:
        if getattr(self, "_head_rows", None) is None:
            P = self.layers[0].keys.shape[2]
            self._head_rows = torch.arange(self.kv_heads, device=self.device) * P
        return self._head_rows

    def _update_at(self, key_states, value_states, layer_idx: int):
        dst, read, (b, n_pg, kv_len) = self._write
        layer, D, ps = self.layers[layer_idx], self.head_dim, self.page_size
        out = []
        for buf, x in ((layer.keys, key_states), (layer.values, value_states)):
            buf.view(-1, D).index_copy_(0, dst, x.to(self.dtype).reshape(-1, D))
            if self.reads_in_place():  # attention reads the pool in place (thinkc.infer.attention)
                out.append(buf)
                continue
            pages = buf.view(self.kv_heads, -1, ps * D).index_select(1, read)  # [H, b * n_pg, ps * D]
            # the rows' logical keys [b, H, kv_len, D]: a strided view of the gathered pages, no second copy
            out.append(pages.view(self.kv_heads, b, n_pg * ps, D).transpose(0, 1)[:, :, :kv_len])
        return out[0], out[1]

    def reads_in_place(self) -> bool:
        """Whether this forward's attention reads the pool's pages directly. FlexAttention does so only
        inside a compiled graph on CUDA: the unfused eager flex materialises a score for every key of the
        pool (tens of GB per layer for a 7B pool), so eager forwards there (prefill, --no-compile) gather
        the rows' pages for SDPA instead. On CPU eager flex is exact and small: the tests run it."""
        if self.attention == "kernel":
            return True
        return self.attention == "flex" and (self.device.type != "cuda" or torch.compiler.is_compiling())

    def update(self, key_states, value_states, layer_idx: int, cache_kwargs=None, *args, **kwargs):
        if self._write is None:
            raise ThinkcError("PagedKVCache is written through the decode engine (set_write before each forward)")
        return self._update_at(key_states, value_states, layer_idx)

    # ---- compaction, swapping -------------------------------------------------------------------
    def compact(self, keep, offsets=None, check: bool = True) -> None:
        """Kept token ranges of every row slide left inside the row's pages (all layers, one op call).
        The caller returns the freed tail pages with pages.shrink once it knows the new lengths."""
        from thinkc.ops.compact_paged import compact_kv_paged

        if offsets is not None:
            keep = (keep, offsets)
        compact_kv_paged(self.buffers(), self.pages.table, self.page_size, keep, self.lengths, check=check)

    def swap_out(self, row: int, length: int) -> SwappedKV:
        """Copy row's logical keys [0, length) of every layer to host memory and free its pages."""
        idx = self.physical(torch.tensor([row], device=self.device),
                            torch.arange(length, device=self.device)[None, :])[0]
        kv = torch.stack([buf[0][:, idx] for buf in self.buffers()]).to("cpu")
        for buf in self.buffers():  # a freed page holds no former row's keys
            buf[0][:, idx] = 0
        self.pages.release(row)
        self.lengths[row] = 0
        return SwappedKV(kv, int(length))

    def swap_in(self, row: int, swapped: SwappedKV) -> None:
        """Write a swapped row back into fresh pages of `row` (the caller checked they are free)."""
        if not self.pages.ensure(row, swapped.length):
            raise ThinkcError("KV pool: swap-in without free pages (scheduler bug)")
        idx = self.physical(torch.tensor([row], device=self.device),
                            torch.arange(swapped.length, device=self.device)[None, :])[0]
        kv = swapped.kv.to(self.device)
        for j, buf in enumerate(self.buffers()):
            buf[0][:, idx] = kv[j]
        self.lengths[row] = swapped.length

    def _grow_to(self, needed: int) -> None:
        """The logical row limit grows (block tables widen); memory stays the pool."""
        self.capacity = max(int(needed), 2 * self.capacity)
        need_pages = pages_for(self.capacity, self.page_size)
        if need_pages > self.pages.max_pages:
            self.pages._widen(need_pages)

    def reset(self) -> None:
        for buf in self.buffers():
            buf.zero_()
        for r in range(self.batch_size_):
            self.pages.release(r)
        self.lengths.zero_()
        self.peak_length.zero_()
        self._pending = self._step = self._write = None


def default_kv_budget(model, page_size: int = 16, share: float = 0.9) -> int | None:
    """On CUDA: the KV tokens that fit in `share` of the device's free memory once the model is
    loaded (every layer's K and V, in the model's dtype); None elsewhere (no pool: full capacity)."""
    param = next(model.parameters())
    if param.device.type != "cuda":
        return None
    layers, kv_heads, head_dim, _ = kv_shape(model)
    per_token = 2 * layers * kv_heads * head_dim * param.element_size()
    free, _ = torch.cuda.mem_get_info(param.device)
    return max(page_size, int(free * share) // per_token // page_size * page_size)
