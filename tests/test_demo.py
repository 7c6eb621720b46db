"""The main job runs end to end on the shipped tiny models (small sizes) and writes its outputs; the
training-free policies run at the budget LightThinker's measured mean peak KV sets."""
import json

from thinkc.demo import DemoSettings, run_demo
from thinkc.demo_baselines import baseline_runs, budget_for_peak

POLICIES = ("rkv", "snapkv", "h2o", "streamingllm")


def test_budget_for_peak_follows_each_policy():
    # H2O / StreamingLLM hold at most `budget` keys; SnapKV / R-KV peak at budget + 128 (their interval)
    assert [budget_for_peak(m, 209.4) for m in POLICIES] == [81, 81, 209, 209]
    assert [budget_for_peak(m, 100) for m in POLICIES] == [9, 33, 100, 100]  # windows 8 / 32: budget > window
    assert budget_for_peak("streamingllm", 3) == 6 and budget_for_peak("h2o", 1) == 2  # sinks + 2; 2
    runs = baseline_runs(("snapkv", "h2o"), "tiny-sft", 100, (0.5, 1.0, 2.0))
    assert [r.label for r in runs] == ["snapkv-b33", "snapkv-b72", "h2o-b50", "h2o-b100", "h2o-b200"]  # 33 once


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_demo_end_to_end_small(tmp_path, one_torch_thread):
    out = tmp_path / "demo"
    summaries = run_demo(DemoSettings(out=out, n_test=4, n_cts=4, max_new_tokens=48, sweep=True))
    summary = json.loads((out / "summary.json").read_text())
    assert summary and (out / "summary.md").stat().st_size > 0
    for name in ("kv_trace.png", "accuracy_vs_tokens.png", "accuracy_vs_kv.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    for run in ("vanilla", "cts", "lightthinker", "cts+lightthinker"):
        rows = _rows(out / "infer" / f"{run}.jsonl")
        assert len(rows) == 4 and all(r["metrics"]["generated_tokens"] > 0 for r in rows)

    # the training-free rows: each policy at LightThinker's mean peak KV, measured from its run file
    lt = _rows(out / "infer" / "lightthinker.jsonl")
    target = sum(r["metrics"]["peak_kv"] for r in lt) / len(lt)
    assert summary["budgets"]["target_peak_kv"] == target
    at = {m: budget_for_peak(m, target) for m in POLICIES}
    assert at["h2o"] == at["streamingllm"] == round(target)
    labels = [s.method for s in summaries]
    assert labels == ["vanilla", "cts", "lightthinker", "cts+lightthinker", *(f"{m}-b{at[m]}" for m in POLICIES)]
    for m in POLICIES:
        rows = _rows(out / "infer" / f"{m}-b{at[m]}.jsonl")
        assert len(rows) == 4 and all(r["method"] == m and r["settings"]["budget"] == at[m] for r in rows)
        if m in ("h2o", "streamingllm"):  # they never hold more than the budget
            assert max(r["metrics"]["peak_kv"] for r in rows) <= at[m]
    # the sweep: more budgets per policy, in the summary (and on the plot), not in the main table
    swept = {s["method"] for s in summary["sweep"]}
    assert {f"h2o-b{budget_for_peak('h2o', f * target)}" for f in (0.5, 1.5, 2.0)} <= swept
    assert not swept & set(labels) and all(s.split("-b")[0] in POLICIES for s in swept)

    assert [c["ratio"] for c in summary["cts"]] == [0.5, 0.6, 0.7]  # one scoring pass, one selection each
    for c in summary["cts"]:
        assert (out / "cts" / f"train.r{c['ratio']}.jsonl").is_file()
        assert abs(c["achieved"] - c["ratio"]) < 0.05 and "kept_share_gap" in c
