"""`thinkc eval` reports training-free policies at a budget side by side: labels from the runs'
recorded settings, and the accuracy-vs-mean-peak-KV plot (one line per policy)."""
import json
from pathlib import Path

import pytest

from _cli import run_cli
from thinkc.errors import ThinkcError
from thinkc.eval.budgets import budget_of, budget_tag, evaluate_labelled, plot_accuracy_vs_kv, series
from thinkc.eval.metrics import MethodSummary

DATA = Path(__file__).parent / "data" / "eval"
PNG = b"\x89PNG\r\n\x1a\n"


def test_budget_tags_and_series():
    assert budget_tag({"budget": 128}) == "-b128"
    assert budget_tag({"budget": 0.5}) == "-b0.5"
    assert budget_tag({"budget": 64, "window": 16}) == "-b64-w16"
    assert budget_tag({"method": "vanilla"}) == "" and budget_tag(None) == ""
    assert [series(x) for x in ("rkv-b128", "tiny-sft/snapkv-b81@runs", "h2o-b0.5", "cts+lightthinker")] == \
        ["rkv", "snapkv", "h2o", "cts+lightthinker"]
    assert budget_of("tiny-sft/rkv-b128@x") == "128" and budget_of("lightthinker") is None


def _run_file(path: Path, method: str, budget, peaks: list[int], correct: list[bool]) -> Path:
    """A run file shaped like `thinkc infer`'s, over the eval fixture's records s1 and s2."""
    answers = {"s1": ("12", "13"), "s2": ("0.5", "7")}
    settings = {"method": method, "model": "tiny-sft", **({} if budget is None else {"budget": budget})}
    with open(path, "w") as f:
        for (sid, (good, bad)), peak, ok in zip(answers.items(), peaks, correct):
            f.write(json.dumps({"id": sid, "method": method, "model": "tiny-sft", "settings": settings,
                                "text": f"so \\boxed{{{good if ok else bad}}}",
                                "metrics": {"peak_kv": peak, "generated_tokens": 10}}) + "\n")
    return path


def test_one_policy_at_two_budgets_is_two_rows(tmp_path):
    runs = [_run_file(tmp_path / "a.jsonl", "rkv", 128, [200, 210], [True, False]),
            _run_file(tmp_path / "b.jsonl", "rkv", 64, [150, 140], [False, False]),
            _run_file(tmp_path / "c.jsonl", "h2o", 0.5, [90, 100], [True, True]),
            _run_file(tmp_path / "d.jsonl", "vanilla", None, [300, 310], [True, True])]
    rows, summaries = evaluate_labelled(runs, DATA / "records.jsonl")
    by = {s.method: s for s in summaries}
    assert list(by) == ["rkv-b128", "rkv-b64", "h2o-b0.5", "vanilla"]
    assert by["rkv-b128"].accuracy == 0.5 and by["rkv-b64"].mean_peak_kv == 145 and by["h2o-b0.5"].accuracy == 1.0
    same = [_run_file(tmp_path / "e.jsonl", "rkv", 128, [1, 2], [True, True]), runs[0]]
    _, twice = evaluate_labelled(same, DATA / "records.jsonl")  # same label in two files: told apart by file
    assert sorted(s.method for s in twice) == ["rkv-b128@a", "rkv-b128@e"]


def _summary(method, accuracy, kv):
    return MethodSummary(method=method, n=10, accuracy=accuracy, mean_tokens=100.0, mean_peak_kv=kv,
                         max_peak_kv=None, dependency_m=None, latency_mean_s=None, run_wall_s=None,
                         tokens_per_s=None, compressions=None)


def test_accuracy_vs_kv_plot(tmp_path):
    summaries = [_summary("vanilla", 0.95, 570.0), _summary("lightthinker", 0.95, 209.0),
                 *[_summary(f"rkv-b{b}", a, b + 128.0) for b, a in ((40, 0.0), (80, 0.1), (180, 0.4))],
                 _summary("tiny-sft/h2o-b209", 0.05, 209.0)]
    data = plot_accuracy_vs_kv(summaries, tmp_path / "kv.png").read_bytes()
    assert data.startswith(PNG) and len(data) > 10000
    with pytest.raises(ThinkcError, match="at least two runs"):
        plot_accuracy_vs_kv(summaries[:1], tmp_path / "one.png")


@pytest.mark.usefixtures("one_torch_thread")
def test_infer_rkv_and_snapkv_at_128_then_eval(tmp_path, monkeypatch, capsys):
    """Issue 24: `thinkc infer -m rkv --budget 128` and `-m snapkv --budget 128` on tiny-sft over the
    synthetic test set, reported by `thinkc eval` under labels that carry the budget."""
    data = tmp_path / "train.jsonl"
    code, _, err = run_cli(monkeypatch, capsys, "data", "synth", "-o", data, "-n", "8", "--n-test", "3")
    assert code in (0, None), err
    test = tmp_path / "train.test.jsonl"
    for method in ("rkv", "snapkv", "vanilla"):
        extra = [] if method == "vanilla" else ["--budget", "128"]
        code, _, err = run_cli(monkeypatch, capsys, "infer", "-i", test, "-o", tmp_path / f"{method}.jsonl",
                               "-m", method, "--model", "tiny-sft", "--max-new-tokens", "300", *extra)
        assert code in (0, None), err
    runs = [tmp_path / f"{m}.jsonl" for m in ("vanilla", "rkv", "snapkv")]
    code, out, err = run_cli(monkeypatch, capsys, "eval", *runs, "--json", tmp_path / "eval.json",
                             "--plots", tmp_path / "plots")
    assert code in (0, None), err
    methods = [m["method"] for m in json.loads((tmp_path / "eval.json").read_text())["methods"]]
    assert methods == ["vanilla", "rkv-b128", "snapkv-b128"]
    assert "rkv-b128" in out and "snapkv-b128" in out
    peaks = {m["method"]: m["max_peak_kv"] for m in json.loads((tmp_path / "eval.json").read_text())["methods"]}
    assert peaks["snapkv-b128"] < peaks["vanilla"]  # 300 tokens: the budget bites
    assert (tmp_path / "plots" / "accuracy_vs_kv.png").read_bytes().startswith(PNG)
