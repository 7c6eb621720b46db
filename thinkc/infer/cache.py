"""StaticGistCache: a preallocated, ragged KV cache that transformers models run on unchanged and that
is compacted in place (design.md §4).

Per layer one K and one V buffer [batch, kv_heads, capacity, head_dim]; per row an int32 length.
Row b's tokens live at slots [0, lengths[b]) (left-aligned). A decode step:

    cache.begin_step(n_new)                # real q tokens per row this step (the rest is padding)
    mask = build from cache.valid_key_mask(q) + causality   # [B, 1, q, kv_len], the loop's job
    model(input_ids, attention_mask=mask, position_ids=..., past_key_values=cache)
        -> each layer: update() writes row b's q tokens at [len_b, len_b + q) and returns K/V views
           [:, :, :kv_len], kv_len = max_b len_b + q; after the last layer lengths += n_new
    cache.compact(ranges, offsets)         # drop tokens of every layer in one op call

The decode engine (thinkc.infer.engine) uses the sync-free path instead: it owns `lengths`, sets
each forward's write slots with `set_write(rows, index, kv_len)` and compacts with `compact`.
Padding tokens are written too (past the row's new length) and overwritten later; they are never
inside [0, length). Overflow of the capacity raises (or doubles the buffers with grow=True).
Positions are the caller's (position_ids): compaction never re-indexes them.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from thinkc.errors import ThinkcError
from thinkc.ops.compact import Keep, compact_kv


def kv_shape(model) -> tuple[int, int, int, torch.nn.Parameter]:
    """(layers, KV heads, head dim, a parameter: dtype and device) of a Qwen2/Llama model's KV."""
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    return cfg.num_hidden_layers, kv_heads, head_dim, next(model.parameters())


class StaticGistLayer(CacheLayerMixin):
    """One layer's buffers; the owning StaticGistCache does all bookkeeping (lengths are shared by layers).
    Defines every method that transformers 5.17..5.24 declare abstract."""

    is_compileable = False
    is_sliding = False
    is_croppable = False

    def __init__(self, owner: "StaticGistCache", keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.owner = owner
        self.keys, self.values = keys, values
        self.device = keys.device
        self.batch_size = keys.shape[0]
        self.is_initialized = True

    def lazy_initialization(self, *args, **kwargs) -> None:  # buffers exist from the start
        return None

    def update(self, *args, **kwargs):
        raise RuntimeError("StaticGistLayer is written through StaticGistCache.update (it tracks per-row lengths)")

    def get_mask_sizes(self, query_length, *args, **kwargs) -> tuple[int, int]:
        return self.owner.get_mask_sizes(query_length)

    def get_seq_length(self, *args, **kwargs) -> int:
        return self.owner.get_seq_length()

    def get_max_length(self) -> int:
        return self.owner.capacity

    def get_max_cache_shape(self) -> int:
        return self.owner.capacity


class StaticGistCache(Cache):
    """Preallocated ragged KV cache with in-place compaction (see the module docstring)."""

    def __init__(self, num_layers: int, batch_size: int, kv_heads: int, head_dim: int, capacity: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", grow: bool = False):
        if min(num_layers, batch_size, kv_heads, head_dim, capacity) <= 0:
            raise ThinkcError(f"StaticGistCache: sizes must be positive (layers={num_layers}, batch={batch_size}, "
                              f"kv_heads={kv_heads}, head_dim={head_dim}, capacity={capacity})")
        device = torch.device(device)
        shape = (batch_size, kv_heads, capacity, head_dim)
        self._init_buffers(shape, num_layers, batch_size, kv_heads, head_dim, capacity, dtype, device)
        self.grow = grow

    def _init_buffers(self, shape, num_layers, rows, kv_heads, head_dim, capacity, dtype, device) -> None:
        """One K and one V buffer of `shape` per layer, per-row lengths, the transformers Cache base."""
        layers = [StaticGistLayer(self, torch.zeros(shape, dtype=dtype, device=device),
                                  torch.zeros(shape, dtype=dtype, device=device)) for _ in range(num_layers)]
        try:
            Cache.__init__(self, layers=layers)
        except TypeError:  # a Cache.__init__ without `layers`: set what it would
            Cache.__init__(self)
            self.layers = layers
        self.num_layers, self.batch_size_, self.kv_heads, self.head_dim = num_layers, rows, kv_heads, head_dim
        self.capacity, self.grow, self.dtype, self.device = capacity, False, dtype, device
        self.lengths = torch.zeros(rows, dtype=torch.int32, device=device)
        self.peak_length = torch.zeros(rows, dtype=torch.int32, device=device)
        self._pending: Optional[torch.Tensor] = None  # n_new announced by begin_step
        self._step: Optional[dict] = None              # state of the forward in progress
        self._write: Optional[tuple] = None            # set_write(): the engine's precomputed layout

    @classmethod
    def for_model(cls, model, batch_size: int, capacity: int, dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None, grow: bool = False) -> "StaticGistCache":
        """Sized from a Qwen2/Llama config; dtype/device default to the model's."""
        layers, kv_heads, head_dim, param = kv_shape(model)
        return cls(layers, batch_size, kv_heads, head_dim, capacity, dtype or param.dtype, device or param.device, grow)

    # ---- the decode loop's side -------------------------------------------------------------
    def begin_step(self, n_new: torch.Tensor | Sequence[int]) -> None:
        """Announce how many of the next forward's q tokens are real, per row (LongTensor [B])."""
        n_new = torch.as_tensor(n_new, device=self.device).long()
        if n_new.shape != (self.batch_size_,):
            raise ThinkcError(f"begin_step: n_new must be [{self.batch_size_}], got {tuple(n_new.shape)}")
        self._pending = n_new

    def _n_new(self, q_len: int) -> torch.Tensor:
        if self._pending is None:
            return torch.full((self.batch_size_,), q_len, dtype=torch.long, device=self.device)
        return self._pending

    def valid_key_mask(self, q_len: int) -> torch.Tensor:
        """bool [B, kv_len]: which key slots hold real tokens once this step's q_len tokens are written
        (cached tokens and this step's real tokens; causality among the new ones is the caller's)."""
        kv_len = self.get_seq_length() + q_len
        visible_end = self.lengths.long() + self._n_new(q_len)
        return torch.arange(kv_len, device=self.device)[None, :] < visible_end[:, None]

    def compact(self, keep: Keep | torch.Tensor, offsets: torch.Tensor | None = None, check: bool = True) -> None:
        """Keep only the given token ranges of every row, in all layers (one compact_kv call).
        `keep`: CSR ranges int32 [R, 2] with `offsets` [B+1], or per-row lists of (start, end)."""
        if self._step is not None:
            raise RuntimeError("StaticGistCache.compact during a forward")
        if offsets is not None:
            keep = (keep, offsets)
        compact_kv(self.buffers(), keep, self.lengths, check=check)

    def buffers(self) -> list[torch.Tensor]:
        """All layers' K then V buffers (what compact_kv works on)."""
        return [layer.keys for layer in self.layers] + [layer.values for layer in self.layers]

    def set_write(self, rows: Optional[torch.Tensor], index: torch.Tensor, kv_len: int) -> None:
        """The decode engine's path (thinkc.infer.engine): the next forward writes its q tokens of row
        rows[i] (all rows when None) at slots index[i] [b, q] and attends to slots [0, kv_len).
        No host sync and no bookkeeping: the engine owns `lengths`. Cleared by clear_write()."""
        if kv_len > self.capacity:
            raise ThinkcError(f"StaticGistCache overflow: {kv_len} slots needed, capacity {self.capacity}")
        if rows is None:  # every row: one index_copy_ per buffer at flat rows of the [B*H*C, D] view
            index = (self._row_heads()[:, :, None] + index[:, None, :]).reshape(-1)
        self._write = (rows, index, kv_len)

    def _row_heads(self) -> torch.Tensor:
        """[B, H]: the flat row of slot 0 of (row, head) in a buffer viewed as [B*H*capacity, D]."""
        if getattr(self, "_heads_cap", None) != self.capacity:
            b = torch.arange(self.batch_size_, device=self.device)[:, None] * self.kv_heads
            self._heads = (b + torch.arange(self.kv_heads, device=self.device)[None, :]) * self.capacity
            self._heads_cap = self.capacity
        return self._heads

    def clear_write(self) -> None:
        self._write = None

    def _update_at(self, key_states, value_states, layer_idx: int):
        rows, index, kv_len = self._write
        layer, D = self.layers[layer_idx], self.head_dim
        k, v = key_states, value_states
        if k.dtype != self.dtype:
            k, v = k.to(self.dtype), v.to(self.dtype)
        if rows is None:  # index: flat rows (set_write); k [B, H, q, D] flattens in the same order
            layer.keys.view(-1, D).index_copy_(0, index, k.reshape(-1, D))
            layer.values.view(-1, D).index_copy_(0, index, v.reshape(-1, D))
            return layer.keys[:, :, :kv_len], layer.values[:, :, :kv_len]
        heads = torch.arange(k.shape[1], device=k.device)
        where = (rows[:, None, None], heads[None, :, None], index[:, None, :])
        layer.keys.index_put_(where, k)
        layer.values.index_put_(where, v)
        return layer.keys[rows, :, :kv_len], layer.values[rows, :, :kv_len]

    # ---- the model's side (transformers Cache API) ------------------------------------------
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: Optional[dict] = None, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if self._write is not None:
            return self._update_at(key_states, value_states, layer_idx)
        B, H, q, D = key_states.shape
        if (B, H, D) != (self.batch_size_, self.kv_heads, self.head_dim):
            raise ThinkcError(f"StaticGistCache: got K/V [B={B}, H={H}, D={D}], the cache holds "
                              f"[B={self.batch_size_}, H={self.kv_heads}, D={self.head_dim}]")
        if layer_idx == 0 or self._step is None:
            self._begin_forward(q)
        step = self._step
        layer = self.layers[layer_idx]
        layer.keys.scatter_(2, step["index"], key_states.to(self.dtype))
        layer.values.scatter_(2, step["index"], value_states.to(self.dtype))
        kv_len = step["kv_len"]
        out = layer.keys[:, :, :kv_len], layer.values[:, :, :kv_len]
        if layer_idx == self.num_layers - 1:
            self._end_forward(step["n_new"])
        return out

    def _begin_forward(self, q: int) -> None:
        n_new = self._n_new(q)
        longest, most, least = torch.stack([self.lengths.long().max(), n_new.max(), n_new.min()]).tolist()
        if least < 0 or most > q:
            raise ThinkcError(f"begin_step: n_new must be in [0, q={q}] per row, got min {least}, max {most}")
        if longest + q > self.capacity:
            if not self.grow:
                raise ThinkcError(f"StaticGistCache overflow: a row holds {longest} tokens, {q} more do not fit in "
                                  f"capacity {self.capacity} (raise the capacity or pass grow=True)")
            self._grow_to(longest + q)
        slots = self.lengths.long()[:, None] + torch.arange(q, device=self.device)[None, :]  # [B, q]
        index = slots[:, None, :, None].expand(self.batch_size_, self.kv_heads, q, self.head_dim)
        self._step = {"index": index, "kv_len": longest + q, "n_new": n_new}

    def _end_forward(self, n_new: torch.Tensor) -> None:
        self.lengths += n_new.to(torch.int32)
        torch.maximum(self.peak_length, self.lengths, out=self.peak_length)
        self._pending = None
        self._step = None

    def _grow_to(self, needed: int) -> None:
        new_cap = max(needed, 2 * self.capacity)
        for layer in self.layers:
            for name in ("keys", "values"):
                old = getattr(layer, name)
                new = torch.zeros(*old.shape[:2], new_cap, old.shape[3], dtype=old.dtype, device=old.device)
                new[:, :, :self.capacity] = old
                setattr(layer, name, new)
        self.capacity = new_cap

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Longest row (what a model without position_ids would start from; pass position_ids instead)."""
        return int(self.lengths.max()) if self.batch_size_ else 0

    def get_mask_sizes(self, query_length, layer_idx: int = 0, *args) -> tuple[int, int]:
        q = query_length.shape[0] if isinstance(query_length, torch.Tensor) else int(query_length)
        return self.get_seq_length() + q, 0

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return self.capacity

    def get_max_cache_shape(self, layer_idx: int = 0) -> int:
        return self.capacity

    def reset(self) -> None:
        for buf in self.buffers():
            buf.zero_()
        self.lengths.zero_()
        self.peak_length.zero_()
        self._pending = self._step = self._write = None

    @property
    def is_compileable(self) -> bool:
        return False
