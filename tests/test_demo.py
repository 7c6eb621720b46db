"""The main job runs end to end on the shipped tiny models (small sizes) and writes its outputs."""
import json

from thinkc.demo import DemoSettings, run_demo


def test_demo_end_to_end_small(tmp_path, one_torch_thread):
    out = tmp_path / "demo"
    summaries = run_demo(DemoSettings(out=out, n_test=4, n_cts=4, max_new_tokens=48))
    methods = {s.method for s in summaries}
    assert len(summaries) == 5 and any("lightthinker" in m for m in methods)
    summary = json.loads((out / "summary.json").read_text())
    assert summary and (out / "summary.md").stat().st_size > 0
    for name in ("kv_trace.png", "accuracy_vs_tokens.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    for run in ("vanilla", "cts", "lightthinker", "cts+lightthinker", "h2o"):
        rows = [json.loads(line) for line in (out / "infer" / f"{run}.jsonl").read_text().splitlines()]
        assert len(rows) == 4 and all(r["metrics"]["generated_tokens"] > 0 for r in rows)
    assert [c["ratio"] for c in summary["cts"]] == [0.5, 0.6, 0.7]  # one scoring pass, one selection each
    for c in summary["cts"]:
        assert (out / "cts" / f"train.r{c['ratio']}.jsonl").is_file()
        assert abs(c["achieved"] - c["ratio"]) < 0.05 and "kept_share_gap" in c
