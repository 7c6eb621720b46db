"""The KV pool (thinkc.infer.pool, thinkc.infer.scheduler): under a tight budget, with preemptions,
every row's tokens and logits equal the unbudgeted run's; the pool never holds more pages than the
budget; freed pages are never visible to another row; the equivalence test holds through the pool."""
import random

import pytest
import torch

from thinkc.errors import ThinkcError
from thinkc.infer.engine import DecodeEngine
from thinkc.infer.loop import decode
from thinkc.infer.policies import H2OPolicy, LightThinkerPolicy, StreamingLLMPolicy, VanillaPolicy
from thinkc.infer.pool import PagePool
from thinkc.models.tiny import tiny_model
from tests.test_infer_equivalence import reference_logits, spec_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LENS = [5, 17, 3, 9, 12, 4, 8, 6]


def _prompts(seed=7, lens=LENS):
    rng = random.Random(seed)
    return [[rng.randrange(3, 240) for _ in range(n)] for n in lens]


def _policy(name):
    return {"vanilla": VanillaPolicy(), "lightthinker": LightThinkerPolicy(spec_for(256)),
            "h2o": H2OPolicy(budget=12), "streamingllm": StreamingLLMPolicy(budget=14)}[name]


def _run(model, prompts, policy, plain=True, record=True, on_step=None, force=None, max_new=32, **pool):
    if force is None and getattr(policy, "spec", None) is not None:
        force = {i: {4, 9, 15, 22} for i in range(len(prompts))}
    engine = DecodeEngine(model, policy, slots=len(prompts), max_prompt=max(map(len, prompts)), max_new_tokens=max_new,
                          record=record, plain=plain, **pool)
    with torch.no_grad():
        out = engine.run(prompts, force=force, on_step=on_step and (lambda n: on_step(engine)))
    return out, engine


def _same(a, b):
    for x, y in zip(a, b):
        assert x.tokens == y.tokens
        assert (x.peak_kv, x.dependency, x.compressions, x.kv_trace) == (y.peak_kv, y.dependency, y.compressions,
                                                                         y.kv_trace)
        assert [p for p, _ in x.logits] == [p for p, _ in y.logits]
        for (_, lx), (_, ly) in zip(x.logits, y.logits):
            torch.testing.assert_close(lx, ly, atol=1e-5, rtol=0)


CASES = [("vanilla", True), ("vanilla", False), ("lightthinker", True), ("lightthinker", False), ("h2o", False),
         ("streamingllm", False)]


@pytest.mark.parametrize("attention", ["gather", "flex", "kernel"])
@pytest.mark.parametrize("method,plain", CASES)
def test_tight_pool_equals_unbudgeted(method, plain, attention):
    """A pool far smaller than the rows' needs: rows wait, get preempted (swapped to the host) and
    resume, and still give the unbudgeted run's tokens, logits and measurements."""
    model = tiny_model("qwen2", vocab_size=256)
    prompts, policy = _prompts(), _policy(method)
    free, _ = _run(model, prompts, policy, plain=plain)
    held = []
    budget = 48 if method in ("h2o", "streamingllm") else 96  # those keep rows short by themselves
    tight, engine = _run(model, prompts, policy, plain=plain, kv_budget=budget, page_size=8, attention=attention,
                         on_step=lambda e: held.append(e.cache.pages.used))
    _same(tight, free)
    if budget == 96:  # rows outgrow their admission: preempted and resumed
        assert engine.sched.preemptions > 0
    assert max(held) <= budget // 8 and engine.summary()["kv_peak"] <= budget
    assert engine.summary()["max_rows_in_flight"] < len(prompts)


def test_pool_equals_dense_reference():
    """The equivalence test through the pool: every logit equals one dense-mask forward over the row's
    augmented sequence (thinkc.gist.rule), with compactions and preemptions on the way."""
    model = tiny_model("llama", vocab_size=256)
    policy = _policy("lightthinker")
    res, engine = _run(model, _prompts(3), policy, kv_budget=80, page_size=4)
    assert engine.sched.preemptions > 0
    for r in res:
        assert r.compressions >= 2
        ref = reference_logits(model, r, policy.flags, False)
        for i, lg in r.logits:
            torch.testing.assert_close(lg, ref[i], atol=1e-4, rtol=0)


def test_freed_pages_never_leak():
    """Every free page is poisoned with huge keys and values before each step: no row's output
    changes, so no row ever attends to a page it does not own (a former row's keys included)."""
    model = tiny_model("qwen2", vocab_size=256)
    prompts, policy = _prompts(5), _policy("lightthinker")
    clean, _ = _run(model, prompts, policy, kv_budget=96, page_size=8)

    def poison(engine):
        pages, ps = engine.cache.pages, engine.cache.page_size
        slots = torch.tensor([p * ps + j for p in pages.free for j in range(ps)], dtype=torch.long)
        for buf in engine.cache.buffers():
            buf[0][:, slots] = 1e4

    dirty, engine = _run(model, prompts, policy, kv_budget=96, page_size=8, on_step=poison)
    assert engine.sched.preemptions > 0
    _same(dirty, clean)


def test_lightthinker_holds_fewer_pages_than_vanilla():
    """The point of the pool: the same budget admits more LightThinker rows than vanilla rows."""
    model = tiny_model("qwen2", vocab_size=256)
    prompts = _prompts(9, [6] * 8)
    kw = dict(record=False, kv_budget=160, page_size=8, max_new=48)
    _, v = _run(model, prompts, _policy("vanilla"), **kw)
    _, g = _run(model, prompts, LightThinkerPolicy(spec_for(256, n_cache=1)), force=12, **kw)
    v, g = v.summary(), g.summary()
    assert g["mean_rows_in_flight"] > 1.2 * v["mean_rows_in_flight"]


def test_page_pool_bookkeeping():
    pool = PagePool(n_pages=4, page_size=4, rows=2, max_pages=1, device="cpu")
    assert pool.ensure(0, 9) and pool.owned[0] == [0, 1, 2] and pool.used == 3
    assert pool.table[0, :3].tolist() == [0, 1, 2]  # the table widened past max_pages=1
    assert not pool.ensure(1, 8) and pool.owned[1] == []  # short: nothing taken
    assert pool.shrink(0, 4) == 2 and pool.owned[0] == [0] and pool.table[0, 1].item() == pool.null
    assert pool.ensure(1, 8) and pool.used == 3 and pool.peak_used == 3
    assert pool.release(0) == 1 and pool.used == 2


def test_budget_too_small_is_one_clear_error():
    model = tiny_model("qwen2", vocab_size=256)
    with pytest.raises(ThinkcError, match="--kv-budget 16: a 17-token prompt does not fit"):
        decode(model, _prompts(), VanillaPolicy(), max_new_tokens=8, kv_budget=16, page_size=8)
    with pytest.raises(ThinkcError, match="one row alone outgrew the pool"):
        decode(model, _prompts(lens=[5]), VanillaPolicy(), max_new_tokens=40, kv_budget=32, page_size=8)


def test_slots_follow_rows_in_flight():
    """With a pool the engine runs a power-of-two bucket of slots for the rows in flight: 20 rows under
    a tight pool shrink it to 8 slots and back, moving rows between slots, and still give the
    unbudgeted run's tokens and logits."""
    model = tiny_model("qwen2", vocab_size=256)
    prompts = _prompts(11, [4 + i % 9 for i in range(20)])
    policy = _policy("lightthinker")
    free, _ = _run(model, prompts, policy)
    sizes = []
    tight, engine = _run(model, prompts, policy, kv_budget=160, page_size=8, on_step=lambda e: sizes.append(e.B))
    _same(tight, free)
    assert max(sizes) == 20 > 8 == min(sizes)


def test_bucket_sizes():
    from thinkc.infer.buckets import bucket

    assert [bucket(n, 64) for n in (0, 1, 8, 9, 17, 33, 64, 80)] == [8, 8, 8, 16, 32, 64, 64, 64]
    assert bucket(30, 20) == 20


@pytest.mark.parametrize("pool", [{}, {"kv_budget": 96, "page_size": 8}])
def test_packed_gist_blocks_equal_streamed(pool):
    """A row that ends a thought feeds its whole gist block in one forward (pack_blocks): the same
    tokens, logits (to float rounding) and measurements as streaming it one token per step, in fewer
    steps; with and without a tight pool."""
    model = tiny_model("qwen2", vocab_size=256)
    prompts, policy = _prompts(4), _policy("lightthinker")
    streamed, s_engine = _run(model, prompts, policy, plain=False, **pool)
    packed, p_engine = _run(model, prompts, policy, plain=False, pack_blocks=True, **pool)
    _same(packed, streamed)
    assert sum(r.compressions for r in packed) >= 2 * len(prompts)
    assert p_engine.meter.row_steps < s_engine.meter.row_steps


def test_sampled_rows_keep_their_generators_through_preemption():
    """Sampling (temperature 0.9, top-p 0.9): every row draws from its own generator, which travels
    with it when it is preempted or moved, so a tight pool samples the same tokens."""
    from thinkc.infer.sampling import SamplingConfig

    model = tiny_model("qwen2", vocab_size=256)
    prompts, policy = _prompts(6), _policy("lightthinker")
    sampling = SamplingConfig(temperature=0.9, top_p=0.9, seed=3)
    force = {i: {4, 9, 15, 22} for i in range(len(prompts))}

    def run(**pool):
        engine = DecodeEngine(model, policy, slots=len(prompts), max_prompt=max(map(len, prompts)), max_new_tokens=32,
                              sampling=sampling, **pool)
        with torch.no_grad():
            return engine.run(prompts, force=force), engine

    free, _ = run()
    tight, engine = run(kv_budget=96, page_size=8)
    assert engine.sched.preemptions > 0
    assert [r.tokens for r in tight] == [r.tokens for r in free]
