"""`thinkc bench serve` at tiny sizes: every method x mode row, texts equal to the run without a pool,
the pool never over its budget, the rows-in-flight plot written (no timing assertions)."""
import json

import pytest
from typer.testing import CliRunner

from thinkc.cli.main import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bench_serve_small(tmp_path):
    out = tmp_path / "serve.json"
    res = CliRunner().invoke(app, ["bench", "serve", "--method", "vanilla", "--method", "lightthinker", "--n", "6",
                                   "--rows", "4", "--kv-budget", "480", "--max-new-tokens", "96", "--device", "cpu",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["results"]
    assert [(r["method"], r["mode"]) for r in rows] == [(m, mode) for m in ("vanilla", "lightthinker")
                                                          for mode in ("pool", "ample", "static")]
    for r in rows:
        assert r["texts = no pool"] is True
        assert r["max rows"] <= 4 and r["tokens/s"] > 0
        if r["mode"] == "pool":
            assert r["kv peak"] <= 480 and r["kv_budget"] == 480
    assert (tmp_path / "serve.png").stat().st_size > 1000


@pytest.mark.parametrize("flag,value", [("--method", "nope"), ("--mode", "fast")])
def test_bench_serve_refuses_unknown_names(monkeypatch, capsys, flag, value):
    from _cli import run_cli

    code, _, err = run_cli(monkeypatch, capsys, "bench", "serve", flag, value, "--device", "cpu")
    assert code != 0 and err.strip().startswith(f"error: {flag} {value!r}") and len(err.strip().splitlines()) == 1
