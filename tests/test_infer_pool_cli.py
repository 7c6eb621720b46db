"""`thinkc infer --kv-budget`: the shipped tiny models on synthetic problems under a tight pool give
the texts of the run without a pool, and `<output>.summary.json` holds the run's engine figures."""
import json

import pytest

from _cli import run_cli
from thinkc.data.synth import synth_splits

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SUMMARY = {"max_rows_in_flight", "kv_budget", "kv_peak", "preemptions", "tokens_per_s", "tasks_per_s",
           "cold_start_s", "forwards_per_token"}


@pytest.fixture
def problems(tmp_path):
    _, test = synth_splits(1, 6, seed=3)
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in test))
    return path


def _texts(path):
    return {r["id"]: r["text"] for r in map(json.loads, path.read_text().splitlines())}


@pytest.mark.parametrize("method", ["vanilla", "lightthinker"])
def test_tight_pool_same_texts_and_summary(tmp_path, monkeypatch, capsys, problems, method):
    common = ["infer", "-i", problems, "-m", method, "-b", "6", "--max-new-tokens", "160"]
    code, _, err = run_cli(monkeypatch, capsys, *common, "-o", tmp_path / "free.jsonl")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, *common, "-o", tmp_path / "pool.jsonl", "--kv-budget", "640")
    assert code == 0, err
    assert _texts(tmp_path / "pool.jsonl") == _texts(tmp_path / "free.jsonl")
    s = json.loads((tmp_path / "pool.jsonl.summary.json").read_text())
    assert SUMMARY <= set(s) and s["kv_budget"] == 640 and 0 < s["kv_peak"] <= 640
    assert 1 <= s["max_rows_in_flight"] <= 6 and s["tokens_per_s"] > 0 and s["forwards_per_token"] > 0
    assert "engine: pool 640 KV tokens" in out.replace("\n", " ")
    free = json.loads((tmp_path / "free.jsonl.summary.json").read_text())
    assert free["preemptions"] == 0 and free["max_rows_in_flight"] == 6


def test_budget_below_one_page_is_one_line(tmp_path, monkeypatch, capsys, problems):
    code, _, err = run_cli(monkeypatch, capsys, "infer", "-i", problems, "-o", tmp_path / "o.jsonl", "-m", "vanilla",
                           "--kv-budget", "8")
    assert code != 0 and err.strip() == "error: --kv-budget 8: the pool needs at least one page (16 tokens)"
