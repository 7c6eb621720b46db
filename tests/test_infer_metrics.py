"""The measurements as the original LightThinker defines them, on the hand example of issue 10:
prompt 100, three 50-token thoughts each closed by n = 9 cache tokens + [o], answer 30 ->
dependency 24,690 (sum over output tokens of prompt + current thought so far + (n+1) x compressions)
and peak KV 180 (prompt + two kept blocks + the third thought + its block, before eviction)."""
import pytest

from thinkc.gist.rule import GistFlags
from thinkc.infer.loop import decode
from thinkc.infer.policies import GistSpec, LightThinkerPolicy, VanillaPolicy
from thinkc.models.tiny import tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_dependency_and_peak_of_the_hand_example():
    model = tiny_model("qwen2", vocab_size=256, num_hidden_layers=1)
    spec = GistSpec(cache_ids=tuple(range(240, 249)), output_id=249, trigger_id=None, level="thought",
                    flags=GistFlags())  # thoughts end where forced: exactly 50 generated tokens each
    prompt = [3 + i % 200 for i in range(100)]
    [res] = decode(model, [prompt], LightThinkerPolicy(spec), max_new_tokens=180,
                   force_compress={0: {50, 100, 150}})
    assert len(res.tokens) == 180 and res.compressions == 3
    assert res.dependency == 24_690
    assert res.peak_kv == 180
    assert res.kv_trace[-1] == 100 + 3 * 10 + 29  # prompt, three kept blocks, the answer fed so far


def test_dependency_without_compression():
    model = tiny_model("qwen2", vocab_size=256, num_hidden_layers=1)
    [res] = decode(model, [[5] * 100], VanillaPolicy(), max_new_tokens=180)
    lp, lo = 100, 180
    assert res.dependency == lp * lo + lo * (lo + 1) // 2 and res.peak_kv == lp + lo - 1
