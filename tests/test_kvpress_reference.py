"""thinkc's SnapKV / StreamingLLM / H2O keep the keys kvpress 0.5.5 keeps where the definitions
coincide, on the committed fixture docs/bench/kvpress-check.json (kvpress's kept positions per layer
and KV head, dumped by docs/bench/kvpress_dump.py in kvpress's own venv; kvpress is not needed here).
The differences the fixture also shows are named in docs/bench/kvpress-check.md."""
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "docs" / "bench"
sys.path.insert(0, str(BENCH))

from kvpress_check import aggregate_keep, check_models, run_thinkc  # noqa: E402
from kvpress_dump import CASES, OUT  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# every compression, every layer and KV head: the same set (single-head models, or kvpress's decode-time
# quirks undone in the dump: RoPE of the window queries, cache order after top-k, pooling, ties)
EXACT = ["snapkv_w1_k1_A", "snapkv_w4_k1_A_ropefix", "snapkv_w4_k7_C_fixed", "streaming_prefill_B",
         "streaming_decode_B_orderfix"]
# first compression: thinkc's rule on kvpress's scores summed over layers and KV heads (H2O: as sums,
# not kvpress's per-key means) = thinkc's set, though per-head sets differ
AGGREGATE = ["snapkv_w1_k1_B", "h2o_prefill_A", "h2o_prefill_B", "h2o_prefill_recent_B"]


@pytest.fixture(scope="module")
def fixture():
    data = json.loads(OUT.read_text())["kvpress"]
    check_models(data)  # same weights and logits as in kvpress's venv
    return {r["case"]["name"]: r for r in data["runs"]}


def _case(name):
    return next(c for c in CASES if c["name"] == name)


@pytest.mark.parametrize("name", EXACT)
def test_same_keys_as_kvpress(fixture, name):
    run = fixture[name]
    kept = run_thinkc(_case(name), run["tokens"])
    assert run["events"]
    for e in run["events"]:
        for head in e["kept"]:
            assert kept.get(e["clock"]) == head, (name, e["clock"], e["layer"])


@pytest.mark.parametrize("name", AGGREGATE)
def test_same_keys_as_kvpress_scores_aggregated(fixture, name):
    run = fixture[name]
    case = _case(name)
    kept = run_thinkc(case, run["tokens"])
    assert kept.get(run["events"][0]["clock"]) == aggregate_keep(case, run["events"])
