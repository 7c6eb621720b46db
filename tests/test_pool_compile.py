"""One compiled graph for every length: with the pool read in place by FlexAttention the compiled
step's shapes do not depend on how many keys the rows hold, so a run of 2,048 new tokens compiles
exactly as often as a run of 64 (counted from dynamo), and its tokens equal the eager step's."""
import random

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from thinkc.infer.loop import decode
from thinkc.infer.policies import LightThinkerPolicy
from thinkc.models.tiny import tiny_model
from tests.test_infer_equivalence import spec_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _compiles(model, policy, new_tokens, force=None):
    rng = random.Random(1)
    prompt = [[rng.randrange(3, 240) for _ in range(9)]]
    counter = CompileCounter()
    torch._dynamo.reset()
    out = decode(model, prompt, policy, max_new_tokens=new_tokens, compile=counter, kv_budget=2400, page_size=16,
                 attention="flex", force_compress=force)
    return counter.frame_count, out[0]


@pytest.mark.slow
def test_compile_count_does_not_grow_with_length():
    """LightThinker (compressions every 50 tokens: rows shrink and grow); ~55 s on CPU, the eager flex
    materialises every score of the pool at each step."""
    model = tiny_model("qwen2", vocab_size=256)
    policy, force = LightThinkerPolicy(spec_for(256)), 50
    _compiles(model, policy, 8, force)  # the process's first compiled run recompiles once (a hub-kernels guard)
    short, _ = _compiles(model, policy, 64, force)
    long, res = _compiles(model, policy, 2048, force)
    assert short == long == 1
    assert len(res.tokens) == 2048
    eager = decode(model, [res_prompt()], policy, max_new_tokens=2048, kv_budget=2400, page_size=16,
                   force_compress=force, attention="gather")[0]  # eager SDPA over gathered pages
    assert eager.tokens == res.tokens


def res_prompt():
    rng = random.Random(1)
    return [rng.randrange(3, 240) for _ in range(9)]


@pytest.mark.parametrize("attention", ["kernel", "flex"])
def test_compiled_pool_step_equals_eager(attention):
    """The compiled step over the pool (thinkc's C++ op traced through its fake kernel, or flex) gives
    the eager step's tokens under a tight pool."""
    from thinkc.ops._backend import backend

    if attention == "kernel" and backend("paged_attention", "cpu") != "cpp":
        pytest.skip("the extension is not built")
    model = tiny_model("llama", vocab_size=256)
    rng = random.Random(2)
    prompts = [[rng.randrange(3, 240) for _ in range(n)] for n in (5, 11, 7)]
    policy = LightThinkerPolicy(spec_for(256))
    kw = dict(max_new_tokens=24, kv_budget=64, page_size=8, attention=attention, force_compress=6)
    eager = decode(model, prompts, policy, **kw)
    torch._dynamo.reset()
    compiled = decode(model, prompts, policy, compile="aot_eager", **kw)
    assert [r.tokens for r in compiled] == [r.tokens for r in eager]
