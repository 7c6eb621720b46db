"""The decode bench runs every method side by side and reports consistent KV figures."""
import pytest

from thinkc.bench.decode import run_decode_bench

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_decode_bench_rows():
    rows = run_decode_bench("tiny", batch_sizes=(1, 2), max_new_tokens=20, compress_every=8, prompt_len=16,
                            n_cache=2, h2o_budget=24, baselines=("hf-dynamic", "forward-loop"))
    thinkc = [(r["method"], r["batch"]) for r in rows if r["method"].startswith("thinkc")]
    assert thinkc == [(f"thinkc {m}", b) for b in (1, 2) for m in ("vanilla", "lightthinker", "h2o")]
    by = {(r["method"], r["batch"]): r for r in rows}
    for b in (1, 2):
        v, lt, h2o = by["thinkc vanilla", b], by["thinkc lightthinker", b], by["thinkc h2o", b]
        hf, floor = by["hf-dynamic", b], by["forward-loop", b]
        assert hf["peak_kv"] == floor["peak_kv"] == v["peak_kv"]  # the same prompts and lengths everywhere
        assert v["peak_kv"] == 16 + 20 - 1 and v["final_kv"] == 16 + 20 - 1 and v["compressions"] == 0
        assert lt["compressions"] == 2  # after tokens 8 and 16 (not after the last)
        # each compression swaps 8 thought tokens + <w> for 2 cache tokens + [o]
        assert lt["final_kv"] == v["final_kv"] - 2 * (8 + 1) + 2 * (1 + 2 + 1)
        assert h2o["final_kv"] <= 24 - 1
        assert all(r["tokens_per_s"] > 0 for r in (v, lt, h2o))
