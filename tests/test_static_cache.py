"""StaticGistCache under a stock transformers model: greedy decoding of ragged rows (left-aligned in
the cache, explicit 4D masks and position_ids) gives the logits of a plain full forward; a compaction
mid-way gives the logits of a full forward with the dropped keys masked out; overflow and growth."""
import warnings

import pytest
import torch

from thinkc.errors import ThinkcError
from thinkc.infer.cache import StaticGistCache
from thinkc.models.tiny import tiny_model

PROMPTS = [[5, 17, 42, 8, 99], [3, 1, 4, 1, 5, 9, 2, 6, 53], [7, 7, 21, 30, 11, 60, 2]]


def forward(model, ids, mask, pos, cache):
    with warnings.catch_warnings():  # past_key_values -> cache rename warning on transformers 5.24
        warnings.simplefilter("ignore")
        return model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True).logits


def step_mask(cache: StaticGistCache, q: int) -> torch.Tensor:
    """[B, 1, q, kv]: real keys, causal among this step's tokens (query i sits at slot len_b + i)."""
    valid = cache.valid_key_mask(q)
    kv = valid.shape[1]
    slot_of_query = cache.lengths.long()[:, None] + torch.arange(q)[None, :]  # [B, q]
    causal = torch.arange(kv)[None, None, :] <= slot_of_query[:, :, None]
    return (valid[:, None, :] & causal)[:, None]


def greedy_decode(model, prompts, steps, compact_after=None, keep=None):
    """Greedy decode with the static cache; returns (per-row generated ids, per-row logits [steps, V])
    and the cache. Optionally compacts with `keep` after `compact_after` decode steps."""
    B = len(prompts)
    n = torch.tensor([len(p) for p in prompts])
    cache = StaticGistCache.for_model(model, B, capacity=64)
    q = int(n.max())
    ids = torch.zeros(B, q, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, :len(p)] = torch.tensor(p)
    cache.begin_step(n)
    pos = torch.arange(q)[None, :].expand(B, q)
    logits = forward(model, ids, step_mask(cache, q), pos, cache)
    last = logits[torch.arange(B), n - 1]
    gen, out_logits = [[] for _ in range(B)], [[] for _ in range(B)]
    next_pos = n.clone()
    for t in range(steps):
        tok = last.argmax(-1)
        for b in range(B):
            gen[b].append(int(tok[b]))
            out_logits[b].append(last[b])
        if compact_after is not None and t == compact_after:
            cache.compact(keep)
        cache.begin_step(torch.ones(B, dtype=torch.long))
        last = forward(model, tok[:, None], step_mask(cache, 1), next_pos[:, None], cache)[:, 0]
        next_pos += 1
    return gen, [torch.stack(x) for x in out_logits], cache


def full_logits(model, seq, drop=(), from_query=None):
    """One forward over one row's whole sequence; keys in `drop` are invisible to queries >= from_query."""
    L = len(seq)
    mask = torch.ones(L, L, dtype=torch.bool).tril()
    if drop:
        mask[from_query:, list(drop)] = False
    return forward(model, torch.tensor([seq]), mask[None, None], torch.arange(L)[None], None)[0]


def test_ragged_greedy_matches_full_forward():
    model = tiny_model("qwen2", seed=0)
    steps = 6
    gen, logits, cache = greedy_decode(model, PROMPTS, steps)
    for b, p in enumerate(PROMPTS):
        full = full_logits(model, p + gen[b])
        expect = full[len(p) - 1: len(p) - 1 + steps]  # logits that predicted each generated token
        torch.testing.assert_close(logits[b], expect, atol=1e-5, rtol=1e-5)
    lengths = [len(p) + steps for p in PROMPTS]
    assert cache.lengths.tolist() == lengths
    assert cache.peak_length.tolist() == lengths


def test_compaction_midway_equals_masked_full_forward():
    model = tiny_model("qwen2", seed=1)
    steps, after = 7, 2
    # Cache slots at compaction time = absolute indices (rows are left-aligned, nothing dropped yet).
    # At compaction a row holds its prompt + `after` fed tokens.
    keep = [[(0, 1), (3, 7)],          # row 0 (len 5 + 2 = 7): drops slots 1, 2
            [(0, 2), (5, 11)],         # row 1 (len 9 + 2 = 11): drops slots 2..4
            [(0, 9)]]                  # row 2: keeps all
    drops = [{1, 2}, {2, 3, 4}, set()]
    gen, logits, cache = greedy_decode(model, PROMPTS, steps, compact_after=after, keep=keep)
    for b, p in enumerate(PROMPTS):
        seq = p + gen[b]
        # queries from the token fed right after the compaction on (index len(p) + after) lose the keys
        full = full_logits(model, seq, drops[b], from_query=len(p) + after)
        expect = full[len(p) - 1: len(p) - 1 + steps]
        torch.testing.assert_close(logits[b], expect, atol=1e-5, rtol=1e-5)
        if drops[b]:  # the drop matters: without it the logits after the compaction differ
            unmasked = full_logits(model, seq)[len(p) - 1: len(p) - 1 + steps]
            assert not torch.allclose(logits[b][after + 1:], unmasked[after + 1:], atol=1e-4)
    ends = [len(p) + steps for p in PROMPTS]
    assert cache.lengths.tolist() == [e - len(d) for e, d in zip(ends, drops)]
    assert cache.peak_length.tolist() == [max(len(p) + after, e - len(d)) for p, e, d in zip(PROMPTS, ends, drops)]


def test_compaction_moves_every_layer_and_zeroes_tail():
    cache = StaticGistCache(num_layers=3, batch_size=2, kv_heads=2, head_dim=4, capacity=10)
    k = torch.randn(2, 2, 6, 4)
    for i in range(3):
        cache.update(k + i, -k - i, i)
    assert cache.lengths.tolist() == [6, 6]
    cache.compact([[(2, 6)], [(0, 1), (5, 6)]])
    assert cache.lengths.tolist() == [4, 2]
    for i, layer in enumerate(cache.layers):
        assert torch.equal(layer.keys[0, :, :4], k[0, :, 2:6] + i)
        assert torch.equal(layer.values[1, :, :2], -torch.stack([k[1, :, 0], k[1, :, 5]], 1) - i)
        assert not layer.keys[0, :, 4:6].any() and not layer.values[1, :, 2:6].any()


def test_ragged_update_writes_at_row_lengths_and_masks_padding():
    cache = StaticGistCache(num_layers=1, batch_size=2, kv_heads=1, head_dim=2, capacity=8)
    cache.begin_step([3, 1])
    assert cache.valid_key_mask(3).tolist() == [[True] * 3, [True, False, False]]
    k = torch.arange(12.).reshape(2, 1, 3, 2)
    keys, _ = cache.update(k, k, 0)
    assert keys.shape == (2, 1, 3, 2) and cache.lengths.tolist() == [3, 1]
    cache.begin_step([1, 2])
    k2 = torch.full((2, 1, 2, 2), -1.)
    keys, _ = cache.update(k2, k2, 0)
    assert keys.shape[2] == 5  # max(len) + q
    assert torch.equal(cache.layers[0].keys[1, 0, 1:3], k2[1, 0])  # row 1 wrote at its own length
    assert torch.equal(cache.layers[0].keys[0, 0, :3], k[0, 0])
    assert cache.lengths.tolist() == [4, 3]
    assert cache.get_seq_length() == 4 and cache.get_mask_sizes(1) == (5, 0)


def test_overflow_raises_and_grow_doubles():
    cache = StaticGistCache(num_layers=2, batch_size=1, kv_heads=1, head_dim=2, capacity=4)
    k = torch.randn(1, 1, 3, 2)
    cache.update(k, k, 0)
    cache.update(k, k, 1)
    with pytest.raises(ThinkcError, match="overflow"):
        cache.update(k, k, 0)
    assert cache.lengths.tolist() == [3]  # nothing written
    grown = StaticGistCache(num_layers=1, batch_size=1, kv_heads=1, head_dim=2, capacity=4, grow=True)
    grown.update(k, k, 0)
    grown.update(k + 1, k + 1, 0)
    assert grown.capacity == 8 and grown.lengths.tolist() == [6]
    assert torch.equal(grown.layers[0].keys[0, 0, :6], torch.cat([k, k + 1], 2)[0, 0])
