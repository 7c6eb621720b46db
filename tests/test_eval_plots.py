"""Plots are written as non-empty PNGs and pick a sample every method has a trace for."""
from pathlib import Path

import pytest

from thinkc.errors import ThinkcError
from thinkc.eval.metrics import evaluate_runs
from thinkc.eval.plots import pick_trace_sample, plot_accuracy_vs_tokens, plot_kv_trace, write_plots

DATA = Path(__file__).parent / "data" / "eval"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def scored():
    runs = [DATA / "runs" / "vanilla.jsonl", DATA / "runs" / "lightthinker.jsonl"]
    return evaluate_runs(runs, DATA / "records.jsonl")


def test_plots_are_non_empty_pngs(scored, tmp_path):
    rows, summaries = scored
    kv = plot_kv_trace(rows, tmp_path / "kv.png", sample_id="s4")
    acc = plot_accuracy_vs_tokens(summaries, tmp_path / "acc.png")
    for path in (kv, acc):
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000


def test_write_plots_and_trace_choice(scored, tmp_path):
    rows, summaries = scored
    assert pick_trace_sample(rows) == "s1"
    written = write_plots(rows, summaries, tmp_path / "plots")
    assert sorted(p.name for p in written) == ["accuracy_vs_tokens.png", "kv_trace.png"]


def test_missing_traces_are_a_clear_error(scored, tmp_path):
    rows, _ = scored
    no_trace = [{**r, "metrics": {}} for r in rows]
    with pytest.raises(ThinkcError, match="kv_trace"):
        plot_kv_trace(no_trace, tmp_path / "kv.png")
    with pytest.raises(ThinkcError, match="no kv_trace for sample 'zzz'"):
        plot_kv_trace(rows, tmp_path / "kv.png", sample_id="zzz")


def test_ratio_variants_form_one_series(tmp_path):
    from thinkc.eval.metrics import MethodSummary
    from thinkc.eval.plots import ratio_series

    assert {ratio_series(m) for m in ("cts-r0.5", "cts-r0.7", "cts_r1.0")} == {"cts"}
    assert ratio_series("tiny-cts.r0.9/vanilla") == "tiny-cts/vanilla"
    assert [ratio_series(m) for m in ("h2o", "r2d2", "lightthinker")] == ["h2o", "r2d2", "lightthinker"]
    summaries = [MethodSummary(m, 4, acc, tok, None, None, None, None, None, None)
                 for m, acc, tok in [("cts-r0.5", 0.5, 80.0), ("cts-r0.9", 0.75, 120.0), ("vanilla", 1.0, 150.0)]]
    path = plot_accuracy_vs_tokens(summaries, tmp_path / "acc.png")
    assert path.read_bytes().startswith(PNG)
