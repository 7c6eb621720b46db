"""The `thinkc` CLI: help texts, the data workflow end to end, one-line errors with exit code 2."""
import json
import sys

import pytest
from typer.testing import CliRunner

from thinkc.cli.main import app, main
from thinkc.data.schema import read_records

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps at 80 columns when not on a terminal


def _run_main(monkeypatch, capsys, *args):
    """Run the real entry point (which turns ThinkcError into one line + exit 2)."""
    monkeypatch.setattr(sys, "argv", ["thinkc", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr()


@pytest.mark.parametrize("cmd", [[], ["doctor"], ["data"], ["data", "synth"], ["data", "import"], ["data", "export"],
                                 ["data", "stats"], ["models"], ["models", "prepare"], ["models", "list"]])
def test_help(cmd):
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_root_help_lists_commands():
    out = runner.invoke(app, ["--help"]).output
    for name in ("doctor", "data", "models"):
        assert name in out


def test_data_workflow(tmp_path):
    train, test = tmp_path / "synth.jsonl", tmp_path / "synth.test.jsonl"
    r = runner.invoke(app, ["data", "synth", "-o", str(train), "-n", "40", "--n-test", "10", "--seed", "3",
                            "--min-steps", "2", "--max-steps", "3"])
    assert r.exit_code == 0, r.output
    recs = read_records(train)
    assert len(recs) == 40 and len(read_records(test)) == 10
    assert all(2 <= x.meta["steps"] <= 3 for x in recs)

    r = runner.invoke(app, ["data", "stats", str(train)])
    assert r.exit_code == 0, r.output
    assert "40 records" in r.output and "thinking tokens" in r.output and "thoughts / record" in r.output

    out = tmp_path / "m.jsonl"
    r = runner.invoke(app, ["data", "export", str(train), "-o", str(out), "--format", "messages"])
    assert r.exit_code == 0, r.output
    back = tmp_path / "back.jsonl"
    r = runner.invoke(app, ["data", "import", str(out), "-o", str(back)])
    assert r.exit_code == 0, r.output
    assert [(x.id, x.thinking, x.answer) for x in read_records(back)] == [(x.id, x.thinking, x.answer) for x in recs]

    r = runner.invoke(app, ["data", "export", str(train), "-o", str(tmp_path / "a.json"), "--format", "alpaca"])
    assert r.exit_code == 0 and len(json.loads((tmp_path / "a.json").read_text())) == 40


def test_import_skip_invalid_reports_the_count(tmp_path):
    src = tmp_path / "m.jsonl"
    good = {"messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "<think>2</think>2"}]}
    src.write_text("\n".join([json.dumps(good), "{bad", json.dumps({"messages": []})]) + "\n")
    r = runner.invoke(app, ["data", "import", str(src), "-o", str(tmp_path / "o.jsonl"), "--skip-invalid"])
    assert r.exit_code == 0, r.output
    assert "imported 1 records" in r.output and "skipped 2 invalid" in r.output


def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"id": "a", "question": "q", "thinking": "t", "answer": "a"}\n{"id": "b"}\n')
    code, cap = _run_main(monkeypatch, capsys, "data", "stats", src)
    assert code == 2
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and f"{src}:2: missing field(s)" in lines[0] and "Traceback" not in cap.err

    code, cap = _run_main(monkeypatch, capsys, "data", "import", tmp_path / "nope.jsonl", "-o", tmp_path / "o.jsonl")
    assert code == 2 and "no such file" in cap.err and len(cap.err.strip().splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists()

    code, cap = _run_main(monkeypatch, capsys, "models", "prepare", "llama-70b")
    assert code == 2 and "only smollm2 can be prepared" in cap.err


def test_synth_bad_option_is_a_user_error(tmp_path, monkeypatch, capsys):
    code, cap = _run_main(monkeypatch, capsys, "data", "synth", "-o", tmp_path / "s.jsonl", "--filler", "1.5")
    assert code == 2 and "filler" in cap.err and len(cap.err.strip().splitlines()) == 1


def test_doctor_and_models_list(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKC_HOME", str(tmp_path))
    r = runner.invoke(app, ["doctor"])
    assert r.exit_code == 0, r.output
    assert "torch" in r.output and "extension thinkc._C" in r.output and "not prepared" in r.output
    r = runner.invoke(app, ["models", "list"])
    assert r.exit_code == 0 and "thinkc models prepare smollm2" in r.output
