"""Output at 80 columns (issue 12): every --help keeps each option name whole, and the result tables
of eval, infer, demo, data cts and bench keep every method / model name whole (nothing cut to "…")."""
import io
import re
import sys
from types import SimpleNamespace

import pytest
import typer.main
from rich.console import Console

from thinkc.cli.main import RICH_HELP_MIN_WIDTH, app, main

NAMES = ["tiny-cts-lightthinker/lightthinker", "tiny-lightthinker/streamingllm", "smollm2/cts+lightthinker",
         "vanilla"]


def command_paths(cmd=None, prefix=()):
    """(path, click command) of the root, every group and every command."""
    cmd = cmd or typer.main.get_command(app)
    out = [(prefix, cmd)]
    for name, sub in getattr(cmd, "commands", {}).items():
        out += command_paths(sub, prefix + (name,))
    return out


PATHS = command_paths()


def help_text(monkeypatch, capsys, width: int, path) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    monkeypatch.setattr(sys, "argv", ["thinkc", *path, "--help"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("width", [80, RICH_HELP_MIN_WIDTH])
@pytest.mark.parametrize("path, cmd", PATHS, ids=[" ".join(p) or "thinkc" for p, _ in PATHS])
def test_help_keeps_every_option_name(monkeypatch, capsys, width, path, cmd):
    out = help_text(monkeypatch, capsys, width, path)
    assert "…" not in out, out
    assert max(len(line) for line in out.splitlines()) <= width
    assert ("╭─ Options" in out) == (width >= RICH_HELP_MIN_WIDTH)  # rich panels only where they fit
    for param in cmd.params:
        for name in [*param.opts, *param.secondary_opts]:
            if name.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", out), (name, out)


def test_narrow_help_is_reset_for_a_wide_terminal(monkeypatch, capsys):
    help_text(monkeypatch, capsys, 80, ("data", "cts"))
    assert "╭─ Options" in help_text(monkeypatch, capsys, 200, ("data", "cts"))


def test_reference_model_is_marked_required(monkeypatch, capsys):
    out = help_text(monkeypatch, capsys, 80, ("data", "cts"))
    line = next(ln for ln in out.splitlines() if "--reference-model" in ln)
    block = out[out.index(line):].split("\n  -")[0]
    assert "[required]" in block


def render(renderable, width: int = 80) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(renderable)
    return buf.getvalue()


def assert_whole(out: str, names, width: int = 80):
    """No cut cell, no line wider than the console, each name whole (long model/method names may
    be printed on two lines, broken after the '/')."""
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= width, out
    for name in names:
        for part in name.split("/"):
            assert re.search(rf"(?<![\w+-]){re.escape(part)}(?![\w+-])", out), (part, out)


def summary(method, **kw):
    base = dict(method=method, n=60, accuracy=0.25, mean_tokens=512.3, mean_peak_kv=180.5, max_peak_kv=400,
                dependency_m=1.234, latency_mean_s=12.345, run_wall_s=123.45, tokens_per_s=1234.5,
                compressions=7.25)
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize("width", [80, 60])
def test_eval_table_fits_and_keeps_names(width):
    from thinkc.eval.report import rich_table

    out = render(rich_table([summary(m) for m in NAMES]), width)
    assert_whole(out, NAMES, width)
    for header in ("acc %", "tokens", "peak KV"):
        assert header in out


def test_eval_table_is_whole_when_wide():
    from thinkc.eval.report import COLUMNS, rich_table

    out = render(rich_table([summary(m) for m in NAMES]), 200)
    assert all(h in out for _, h, _ in COLUMNS) and all(m in out for m in NAMES)


def test_infer_summary_fits_80_columns():
    from thinkc.cli.infer import _print_summary
    from thinkc.infer.run import RunStats

    buf = io.StringIO()
    s = {"samples": 500, "accuracy": 0.5, "mean_peak_kv": 1234.5, "mean_dependency": 12345678,
         "mean_generated_tokens": 2345.6, "mean_compressions": 12.5}
    _print_summary(Console(file=buf, width=80), s, "streamingllm", "tiny-cts-lightthinker", RunStats(), None)
    assert_whole(buf.getvalue(), ["streamingllm", "tiny-cts-lightthinker"])


def test_demo_tables_fit_80_columns():
    from thinkc.demo import results_table

    methods = ["vanilla", "cts", "lightthinker", "cts+lightthinker", "h2o"]
    table = results_table([summary(m) for m in methods], {m: 300.0 for m in methods}, {m: 12.0 for m in methods})
    assert_whole(render(table), methods)


def test_cts_table_fits_80_columns(tmp_path):
    from thinkc.cli.cts import _print_rows

    out = str(tmp_path / "a-rather-long-folder-name" / "compressed-training-traces.r0.5.jsonl")
    row = {"ratio": 0.5, "records": 1000, "tokens_before": 1234567, "tokens_after": 617283, "achieved": 0.5,
           "compute_kept_share": 0.9, "filler_kept_share": 0.2, "kept_share_gap": 0.7, "chance_gap": 0.1,
           "forced_over_budget": 0,
           "output": out}
    buf = io.StringIO()
    _print_rows(Console(file=buf, width=80), [row], "CTS (native, reference tiny-cts-reference)")
    text = buf.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert out in text.replace("\n", "").replace("│", "").replace(" ", "") or out.split("/")[-1] in text


def test_bench_table_splits_instead_of_cutting(monkeypatch, capsys):
    from thinkc.bench.common import print_table

    monkeypatch.setenv("COLUMNS", "80")
    rows = [{"impl": name, "backend": "cpp", "shape": "56x[8, 4, 8192, 128]", "dtype": "bfloat16",
             "kept_tokens_mean": 4096.5, "GB": 12.5, "time_ms": 1.234, "GB/s": 3000.0, "pct_peak_bw": 0.7,
             "match": True, "speedup_vs_torch": 3.5} for name in ("thinkc", "torch gather+copy")]
    print_table("thinkc bench compact — NVIDIA H100 80GB HBM3 (cuda), torch 2.13.0", rows)
    out = capsys.readouterr().out
    assert_whole(out, ["thinkc", "torch gather+copy", "56x[8, 4, 8192, 128]"])
    for key in rows[0]:
        assert key in out  # every column is there, in one of the tables


def test_fit_table_steps():
    from thinkc.console import FitTable

    t = FitTable("t", ["name", "alpha", "beta", "gamma"], [["model/method", "1", "2", "3"]],
                 short={"alpha": "a"}, optional=["beta"])
    assert t.layout(200)[:2] == (["name", "alpha", "beta", "gamma"], [[0, 1, 2, 3]])
    heads, groups, rows = t.layout(26)  # short headers, the name on two lines, beta dropped
    assert heads[1] == "a" and groups == [[0, 1, 3]] and rows[0][0] == "model/\nmethod"
    heads, groups, _ = t.layout(18)  # then split, each part repeating the name
    assert all(g[0] == 0 for g in groups) and sorted(c for g in groups for c in g[1:]) == [1, 3]
    assert "…" not in render(t, 18) and "model/" in render(t, 18)


def test_models_list_fits_80_columns(monkeypatch, capsys):
    from thinkc.models.loading import list_shipped

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(sys, "argv", ["thinkc", "models", "list"])
    try:
        main()
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out
    assert "…" not in out and all(re.search(rf"│ {re.escape(n)} +│", out) for n in ["smollm2", *list_shipped()])
