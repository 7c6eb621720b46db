"""Cache policies over the decode loop: vanilla equals HF generate; budget policies never exceed
their budget and keep what their rule says; sampling is reproducible per sample."""
import random

import pytest
import torch

from thinkc.errors import ThinkcError
from thinkc.gist.rule import Role
from thinkc.infer.loop import decode
from thinkc.infer.policies import H2OPolicy, SepLLMPolicy, StreamingLLMPolicy, VanillaPolicy, make_policy
from thinkc.infer.policies.base import SlotView
from thinkc.infer.sampling import SamplingConfig
from thinkc.models.tiny import tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_vanilla_equals_generate(arch):
    rng = random.Random(0)
    model = tiny_model(arch, vocab_size=256)
    prompts = [[rng.randrange(3, 256) for _ in range(n)] for n in (4, 9, 6)]
    ours = decode(model, prompts, VanillaPolicy(), max_new_tokens=16)
    L = max(map(len, prompts))
    ids = torch.tensor([[0] * (L - len(p)) + p for p in prompts])
    att = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        hf = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=16, do_sample=False,
                            pad_token_id=0, eos_token_id=None)
    for r, res in zip(hf[:, L:].tolist(), ours):
        assert res.tokens == r
        lp, lo = len(prompts[res.index]), len(res.tokens)
        assert res.dependency == lp * lo + lo * (lo + 1) // 2  # design.md §4
        assert res.peak_kv == lp + lo - 1 and res.compressions == 0


def test_eos_stops_rows_independently():
    model = tiny_model("qwen2", vocab_size=256)
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12]]
    free = decode(model, prompts, VanillaPolicy(), max_new_tokens=12)
    eos = free[0].tokens[3]  # row 0 hits it at step 4 at the latest
    stopped = decode(model, prompts, VanillaPolicy(), max_new_tokens=12, eos_ids=[eos])
    n0 = free[0].tokens.index(eos) + 1
    assert stopped[0].tokens == free[0].tokens[:n0] and stopped[0].stopped_by_eos
    n1 = free[1].tokens.index(eos) + 1 if eos in free[1].tokens else 12
    assert stopped[1].tokens == free[1].tokens[:n1]


def test_sampling_independent_of_batch():
    model = tiny_model("llama", vocab_size=256)
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12], [20, 21]]
    cfg = SamplingConfig(temperature=1.0, top_p=0.9, seed=7)
    together = decode(model, prompts, VanillaPolicy(), max_new_tokens=10, sampling=cfg)
    alone = decode(model, prompts[1:2], VanillaPolicy(), max_new_tokens=10, sampling=cfg, sample_indices=[1])
    assert together[1].tokens == alone[0].tokens
    other_seed = decode(model, prompts, VanillaPolicy(), max_new_tokens=10, sampling=SamplingConfig(1.0, 0.9, seed=8))
    assert [r.tokens for r in other_seed] != [r.tokens for r in together]


class Spy:
    """Wraps a policy and checks every keep decision against the cache it saw."""

    def __init__(self, inner, check):
        self.inner, self.check, self.calls = inner, check, 0
        self.name, self.needs_attention = inner.name, inner.needs_attention
        self.flags, self.exclude_continue = inner.flags, inner.exclude_continue

    def block_after(self, *a):
        return None

    def keep(self, slots: SlotView):
        keep = self.inner.keep(slots)
        self.check(slots, keep)
        self.calls += 1
        return keep


def _run(policy, check, prompts, n=30):
    spy = Spy(policy, check)
    model = tiny_model("qwen2", vocab_size=256)
    res = decode(model, prompts, spy, max_new_tokens=n)
    assert spy.calls == n
    return res


PROMPTS = [[3, 4, 5, 6, 7, 8], [9, 10, 11], list(range(12, 27))]  # the last is longer than the budgets


def test_streamingllm_sinks_and_window():
    budget, sinks = 12, 4

    def check(s, keep):
        for b in range(s.pos.shape[0]):
            pos = sorted(s.pos[b][s.valid[b]].tolist())
            kept = sorted(s.pos[b][keep[b]].tolist())
            expect = pos if len(pos) <= budget - 1 else pos[:sinks] + pos[-(budget - 1 - sinks):]
            assert kept == expect

    res = _run(StreamingLLMPolicy(budget, sinks), check, PROMPTS)
    for r, p in zip(res, PROMPTS):
        assert max(r.kv_trace) <= budget - 1  # so every decode query attends to <= budget keys
        assert r.peak_kv == max(len(p), budget)  # the long prompt is prefilled whole, then trimmed


def test_h2o_heavy_hitters_and_recent():
    budget, window = 10, 4

    def check(s, keep):
        for b in range(s.pos.shape[0]):
            v = s.valid[b]
            if int(v.sum()) <= budget - 1:
                assert keep[b][v].all()
                continue
            assert int(keep[b].sum()) == budget - 1
            assert float(s.score[b][v].sum()) > 0  # attention weights really were collected
            pos = s.pos[b][v]
            recent = set(sorted(pos.tolist())[-window:])
            kept = set(s.pos[b][keep[b]].tolist())
            assert recent <= kept
            rest = v & ~torch.isin(s.pos[b], torch.tensor(sorted(recent)))
            heavy = kept - recent
            # every evicted non-recent key scored no more than every kept heavy hitter
            lo = min(float(s.score[b][v & (s.pos[b] == p)]) for p in heavy)
            evicted = rest & ~keep[b]
            assert (s.score[b][evicted] <= lo).all()

    res = _run(H2OPolicy(budget, window), check, PROMPTS)
    assert all(max(r.kv_trace) <= budget - 1 for r in res)


def test_sepllm_keeps_separators():
    seps = [4, 6, 8, 13, 15, 17]  # prompt tokens, so separators sit in the cache
    budget, initial, window = 12, 2, 4
    seen_kept_sep = []

    def check(s, keep):
        for b in range(s.pos.shape[0]):
            v = s.valid[b]
            assert int(keep[b].sum()) <= budget - 1
            pos = sorted(s.pos[b][v].tolist())
            kept = set(s.pos[b][keep[b]].tolist())
            assert set(pos[:initial]) | set(pos[-window:]) <= kept
            sep_pos = {p for p in pos if int(s.token[b][v & (s.pos[b] == p)]) in seps} - set(pos[:initial]) - set(pos[-window:])
            for p in kept - set(pos[:initial]) - set(pos[-window:]):  # the rest are separators
                assert p in sep_pos
            room = budget - 1 - len(set(pos[:initial]) | set(pos[-window:]))
            assert len(kept & sep_pos) == min(room, len(sep_pos))  # as many as fit, newest first
            if kept & sep_pos:
                seen_kept_sep.append(1)
                assert max(sep_pos - kept, default=-1) < min(kept & sep_pos)

    res = _run(SepLLMPolicy(seps, budget, initial, window), check, PROMPTS)
    assert all(max(r.kv_trace) <= budget - 1 for r in res)
    assert seen_kept_sep  # separators outside the initial/local window really were kept


def test_make_policy_defaults(tokenizer):
    assert make_policy("h2o").budget == 0.5 and make_policy("h2o", budget=1024).budget == 1024
    sep = make_policy("sepllm", tokenizer=tokenizer)
    assert sep.budget == 0.5 and len(sep.sep_ids) > 0
    assert make_policy("sepllm", tokenizer=tokenizer, budget=1024).window == 256


@pytest.mark.parametrize("method", ["h2o", "streamingllm"])
def test_ratio_budget_keeps_that_share(method):
    """A float budget keeps ceil(ratio * positions seen) - 1 keys per row after every step, so it
    evicts on short traces too (unlike an absolute budget the trace never reaches)."""
    model = tiny_model("qwen2", vocab_size=256)
    prompts = [list(range(3, 3 + n)) for n in (6, 15)]
    res = decode(model, prompts, make_policy(method, budget=0.5), max_new_tokens=20)
    least = 6 if method == "streamingllm" else 2
    for r, p in zip(res, prompts):
        cached = len(p)  # keys in the cache when the step's decision is made
        for step, kept in enumerate(r.kv_trace, start=1):
            seen = len(p) + step - 1  # positions fed so far
            assert kept == min(cached, max(-(-seen // 2), least) - 1)
            cached = kept + 1  # the next step feeds one token
        assert r.kv_trace[-1] < (len(p) + 20) // 2
    assert make_policy("streamingllm", budget=64).budget == 64
    with pytest.raises(ThinkcError, match="gist config"):
        make_policy("lightthinker")
    with pytest.raises(ThinkcError, match="budget"):
        make_policy("streamingllm", budget=5)
    assert int(Role.CACHE) == 5


def test_token_level_compression_stops_at_end_of_thinking():
    """The layout compresses only the thinking: after "</think>" no more token-level blocks."""
    from thinkc.infer.policies.base import RowState
    from thinkc.infer.policies.lightthinker import GistSpec, LightThinkerPolicy

    spec = GistSpec(cache_ids=(90, 91), output_id=92, level="token", step=3, close_ids=(7, 8))
    policy, row = LightThinkerPolicy(spec), RowState(index=0)
    ends = []
    for t in [1, 2, 3, 4, 7, 8, 5, 6, 9, 10, 11, 12]:
        row.generated.append(t)
        row.thought_len += 1
        block = policy.block_after(row, t, forced=False)
        ends.append(block is not None)
        if block:
            row.thought_len = 0
    assert ends == [False, False, True, False, False, False, False, False, False, False, False, False]
    assert row.thinking_closed
