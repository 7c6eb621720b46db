"""GPU checks of the decode engine (run on the device machine; skipped without CUDA): the
CUDA-graph step (torch.compile mode="reduce-overhead") gives the eager step's tokens and logits,
LightThinker compressions included, in bf16 and fp32."""
import random

import pytest
import torch

from thinkc.infer.loop import decode
from thinkc.infer.policies import LightThinkerPolicy, VanillaPolicy
from thinkc.models.tiny import tiny_model
from tests.test_infer_equivalence import reference_logits, spec_for

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("method", ["vanilla", "lightthinker"])
def test_cuda_graph_step_equals_eager(method):
    rng = random.Random(0)
    model = tiny_model("qwen2", vocab_size=256).cuda()
    prompts = [[rng.randrange(3, 240) for _ in range(n)] for n in (5, 19, 9, 12)]
    policy = VanillaPolicy() if method == "vanilla" else LightThinkerPolicy(spec_for(256))
    kw = dict(max_new_tokens=40, force_compress=7 if method == "lightthinker" else None, record_logits=True,
              batch_size=3)
    eager = decode(model, prompts, policy, **kw)
    graphs = decode(model, prompts, policy, compile=True, **kw)
    for a, b in zip(eager, graphs):
        assert a.tokens == b.tokens and a.peak_kv == b.peak_kv and a.compressions == b.compressions
        for (i, la), (j, lb) in zip(a.logits, b.logits):
            assert i == j
            torch.testing.assert_close(la, lb, atol=1e-4, rtol=0)
        if method == "lightthinker":  # and the dense-mask reference still holds on the GPU path
            ref = reference_logits(model, b, policy.flags, False)
            for aug_idx, lb in b.logits:
                torch.testing.assert_close(lb, ref[aug_idx], atol=1e-3, rtol=0)


@pytest.mark.parametrize("method", ["vanilla", "lightthinker"])
def test_cuda_pool_flex_graphs_equal_unbudgeted(method):
    """The KV pool on the GPU: FlexAttention over the pages, CUDA graphs, a tight budget (preemptions)
    give the eager run's tokens without a pool; the pool never holds more than its budget."""
    rng = random.Random(1)
    model = tiny_model("qwen2", vocab_size=256).cuda()
    prompts = [[rng.randrange(3, 240) for _ in range(n)] for n in (5, 19, 9, 12, 7, 3)]
    policy = VanillaPolicy() if method == "vanilla" else LightThinkerPolicy(spec_for(256))
    kw = dict(max_new_tokens=64, force_compress=7 if method == "lightthinker" else None, batch_size=6)
    free = decode(model, prompts, policy, **kw)
    engines = []
    pooled = decode(model, prompts, policy, compile=True, kv_budget=256, page_size=16, attention="flex",
                    engine_out=engines, **kw)
    assert [r.tokens for r in pooled] == [r.tokens for r in free]
    s = engines[0].summary()
    assert s["kv_peak"] <= 256 and s["preemptions"] > 0
