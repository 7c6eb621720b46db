"""First-run problems from issue 12 that were still open: null / missing ids, `infer -p` without
-o, prompts past the model's positions, `bench compact` timing a no-op, `bench mask` on a CPU, bench
JSON in the current folder, and `data cts` progress inside long records and on resume."""
import json
from types import SimpleNamespace

import pytest

from _cli import run_cli
from thinkc.errors import ThinkcError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROW = {"question": "Sam has 4 pencils and gets 3 more. How many?", "thinking": "4 + 3 = 7.", "answer": "\\boxed{7}"}


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one logical line stays one printed line


run_main = run_cli  # (exit code, stdout, stderr)


def one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and lines[0].startswith("error: "), err
    return lines[0]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- null / missing ids ---------------------------------------------------------------------

@pytest.mark.parametrize("cmd", [["infer", "-i", "{f}", "-o", "{tmp}/o.jsonl", "-m", "vanilla"],
                                 ["eval", "{tmp}/run.jsonl", "-r", "{f}"]])
def test_null_ids_are_named_not_called_duplicates(tmp_path, monkeypatch, capsys, cmd):
    f = write_rows(tmp_path / "null.jsonl", [{**ROW, "id": None}, {**ROW, "id": None}])
    write_rows(tmp_path / "run.jsonl", [{"id": "a", "method": "vanilla", "text": "7", "metrics": {}}])
    code, _, err = run_main(monkeypatch, capsys, *[a.format(f=f, tmp=tmp_path) for a in cmd])
    line = one_error(err)
    assert code == 2 and line == f"error: {f}: row 1: 'id' is null; give every record an id"
    assert not (tmp_path / "o.jsonl").exists()


def test_empty_and_missing_ids(tmp_path):
    from thinkc.eval.tasks import load_benchmark

    empty = write_rows(tmp_path / "empty.jsonl", [{**ROW, "id": "a"}, {**ROW, "id": ""}])
    with pytest.raises(ThinkcError, match=r"empty\.jsonl: row 2: 'id' is empty; give every record an id$"):
        load_benchmark(empty)
    missing = write_rows(tmp_path / "missing.jsonl", [ROW])
    with pytest.raises(ThinkcError, match=r"missing\.jsonl: rows have a question and an answer but no 'id' field"):
        load_benchmark(missing)


def test_duplicate_ids_name_the_id():
    from thinkc.infer.run import InferSettings, run_inference

    with pytest.raises(ThinkcError, match="input has duplicate id 'b'"):
        run_inference(None, None, [{"id": "a"}, {"id": "b"}, {"id": "b"}], None, InferSettings("vanilla", "m"),
                      None, "unused.jsonl")


# --- infer ------------------------------------------------------------------------------------

def test_prompt_without_output_prints_the_answer_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, "infer", "-p", ROW["question"], "-m", "vanilla",
                              "--max-new-tokens", "12", "--device", "cpu")
    assert code in (0, None), err
    assert "─ generated ─" in out and "(the text stopped at --max-new-tokens 12)" in out and "wrote" not in out
    assert list(tmp_path.iterdir()) == []


def test_input_without_output_is_one_line(tmp_path, monkeypatch, capsys):
    f = write_rows(tmp_path / "in.jsonl", [{**ROW, "id": "a"}])
    code, _, err = run_main(monkeypatch, capsys, "infer", "-i", f, "-m", "vanilla")
    assert code == 2
    assert one_error(err) == "error: --output is required with --input (the JSONL the samples are written to)"


def test_prompt_past_the_positions_warns_once(capsys):
    from thinkc.infer.run import warn_long_prompts

    model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=4096))
    assert warn_long_prompts(model, [[0] * 100, [0] * 12000], 1024) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith("warning: 1 of 2 prompt(s) plus --max-new-tokens 1024 pass "
                                                        "the model's 4,096 positions (longest prompt 12,000 tokens)")
    assert warn_long_prompts(model, [[0] * 100], 1024) == 0 and capsys.readouterr().err == ""


# --- bench ------------------------------------------------------------------------------------

@pytest.mark.parametrize("tokens", [256, 64])
def test_compact_short_caches_are_not_a_no_op(tokens):
    from thinkc.bench.compact import run_compact_bench

    rows = run_compact_bench(batch=2, layers=1, kv_heads=1, head_dim=8, tokens=tokens, repeats=1, warmup=0)
    assert all(r["match"] and r["kept_tokens_mean"] < tokens and r["GB"] > 0 for r in rows)


def test_compact_that_drops_nothing_is_refused():
    from thinkc.bench.compact import run_compact_bench

    with pytest.raises(ThinkcError, match="--tokens 256 with --drop-fraction 0 drops nothing"):
        run_compact_bench(batch=2, layers=1, kv_heads=1, head_dim=8, tokens=256, drop_fraction=0.0)


def test_cpu_bench_defaults_are_small(capsys):
    from thinkc.cli.bench import _lengths

    assert _lengths("mask", [], "cpu") == (1024, 2048, 4096)
    assert "cpu: lengths 1024, 2048, 4096" in capsys.readouterr().out
    assert _lengths("mask", [], "cuda") == (4096, 8192, 16384, 32768)
    assert _lengths("attention", [512], "cpu") == (512,)


def test_bench_json_goes_to_thinkc_home_not_the_current_folder(tmp_path, monkeypatch, capsys):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("THINKC_HOME", str(home))
    code, out, err = run_main(monkeypatch, capsys, "bench", "compact", "--batch", "2", "--layers", "1",
                              "--kv-heads", "1", "--head-dim", "8", "--tokens", "64", "--repeats", "1",
                              "--device", "cpu")
    assert code in (0, None), err
    assert list(cwd.iterdir()) == [] and (home / "bench" / "compact-cpu.json").is_file()
    assert f"wrote {home / 'bench' / 'compact-cpu.json'}" in out


# --- data cts ---------------------------------------------------------------------------------

def test_scoring_reports_every_window(tokenizer):
    from thinkc.cts.scorer import score_records, thinking_ids
    from thinkc.models.tiny import tiny_model

    model = tiny_model("qwen2", vocab_size=len(tokenizer))
    rec = {"thinking": "Let me compute. 12 + 7 = 19. " * 8, "answer": "\\boxed{19}"}
    calls = []
    score_records(model, tokenizer, [rec], batch_size=2, window=16, on_batch=calls.append)
    assert len(calls) > 2 and all(c > 0 for c in calls)  # one batch, many windows: progress inside it
    assert sum(calls) > 2 * len(thinking_ids(tokenizer, rec["thinking"]))  # both rows, all their tokens


def test_cts_rerun_says_what_it_resumes(tmp_path, monkeypatch, capsys):
    src = write_rows(tmp_path / "in.jsonl", [{**ROW, "id": f"r{i}"} for i in range(2)])
    args = ["data", "cts", "-i", src, "-o", tmp_path / "c.jsonl", "-m", "tiny-sft", "-r", "0.5", "--chunk-size", "1"]
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert code in (0, None) and "resuming" not in out, err
    chunks = sorted((tmp_path / "c.cts-native").rglob("chunk-*.npz"))
    assert len(chunks) == 2
    chunks[1].unlink()
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert code in (0, None) and "resuming from 1 of 2 chunks already scored in " in out, err


def test_cts_without_reference_model_is_a_usage_error(tmp_path, monkeypatch, capsys):
    src = write_rows(tmp_path / "in.jsonl", [{**ROW, "id": "a"}])
    code, out, err = run_main(monkeypatch, capsys, "data", "cts", "-i", src, "-o", tmp_path / "c.jsonl")
    assert code == 2 and "--reference-model" in err and "Traceback" not in err
