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
    assert sorted(p.name for p in written) == ["accuracy_vs_kv.png", "accuracy_vs_tokens.png", "kv_trace.png"]


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
    summaries = [_summary(m, acc, tok)
                 for m, acc, tok in [("cts-r0.5", 0.5, 80.0), ("cts-r0.9", 0.75, 120.0), ("vanilla", 1.0, 150.0)]]
    path = plot_accuracy_vs_tokens(summaries, tmp_path / "acc.png")
    assert path.read_bytes().startswith(PNG)


def _summary(method, accuracy, tokens):
    from dataclasses import fields

    from thinkc.eval.metrics import MethodSummary

    blank = {f.name: None for f in fields(MethodSummary)}
    return MethodSummary(**{**blank, "method": method, "n": 4, "accuracy": accuracy, "mean_tokens": tokens})


def test_each_method_keeps_one_colour():
    from thinkc.eval.plots import METHOD_COLORS, method_color

    known = ["vanilla", "cts", "lightthinker", "h2o"]
    assert len({method_color(m) for m in known}) == len(known)  # distinct
    assert method_color("cts-r0.5") == method_color("cts") == METHOD_COLORS["cts"]
    assert method_color("LightThinker") == METHOD_COLORS["lightthinker"]
    other = method_color("my-method")
    assert other == method_color("my-method") and other not in METHOD_COLORS.values()


def test_token_axis_starts_at_zero(tmp_path, monkeypatch):
    import thinkc.eval.plots as plots

    seen = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: seen.setdefault("ax", fig.axes[0]) and path)
    plots.plot_accuracy_vs_tokens([_summary("vanilla", 0.5, 300.0), _summary("cts", 0.5, 200.0)], tmp_path / "a.png")
    assert seen["ax"].get_xlim()[0] == 0 and seen["ax"].get_xlim()[1] > 300
    labels = [t.get_text() for t in seen["ax"].get_legend().get_texts()]
    assert labels == ["vanilla", "cts"] and not seen["ax"].texts  # names in the legend, none on the points
