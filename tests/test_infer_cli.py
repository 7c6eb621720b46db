"""`thinkc infer` end to end on a tiny saved model: JSONL rows with every field, resume skips
finished ids, LightThinker with forced compressions keeps a smaller peak KV than vanilla."""
import json

import pytest
import torch
from typer.testing import CliRunner

from thinkc.cli.main import app
from thinkc.models.tiny import tiny_model
from thinkc.models.tokenizer import tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIELDS = {"id", "method", "model", "prompt_tokens", "text", "pred", "metrics"}
METRICS = {"wall_s", "generated_tokens", "peak_kv", "dependency", "compressions", "kv_trace"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_model")
    tiny_model("qwen2", vocab_size=512).save_pretrained(d)
    tiny_tokenizer().save_pretrained(d)
    return d


@pytest.fixture
def records(tmp_path):
    path = tmp_path / "in.jsonl"
    rows = [{"id": f"q{i}", "question": f"Tom has {i + 3} apples and buys {i}. How many?",
             "thinking": "x", "answer": f"\\boxed{{{2 * i + 3}}}"} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def invoke(*args):
    res = CliRunner().invoke(app, ["infer", *map(str, args)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_infer_writes_rows_and_resumes(model_dir, records, tmp_path):
    out = tmp_path / "vanilla.jsonl"
    text = invoke("--input", records, "--output", out, "--method", "vanilla", "--model", model_dir,
                  "--max-new-tokens", 12, "--batch-size", 2, "--device", "cpu")
    assert "mean peak KV" in text.replace("\n", " ") or "peak" in text
    rows = read(out)
    assert [r["id"] for r in rows] == ["q0", "q1", "q2"]
    for r in rows:
        assert FIELDS <= set(r) and METRICS == set(r["metrics"])
        m = r["metrics"]
        assert m["generated_tokens"] <= 12 and len(m["kv_trace"]) == m["generated_tokens"]
        assert m["peak_kv"] == r["prompt_tokens"] + m["generated_tokens"] - 1
        assert r["gold"] == str(2 * int(r["id"][1:]) + 3)
    # resume: a finished row is not recomputed (marker survives), a missing one is
    rows[1]["text"] = "MARKER"
    out.write_text(json.dumps(rows[1]) + "\n" + json.dumps(rows[0]) + "\n")
    invoke("--input", records, "--output", out, "--method", "vanilla", "--model", model_dir,
           "--max-new-tokens", 12, "--device", "cpu")
    again = read(out)
    assert [r["id"] for r in again] == ["q0", "q1", "q2"]  # input order restored
    assert again[1]["text"] == "MARKER" and again[2]["text"] == rows[2]["text"]


def test_infer_lightthinker_forced(model_dir, records, tmp_path):
    out_v, out_l = tmp_path / "v.jsonl", tmp_path / "l.jsonl"
    common = ["--input", records, "--model", model_dir, "--max-new-tokens", 24, "--device", "cpu"]
    invoke(*common, "--output", out_v, "--method", "vanilla")
    invoke(*common, "--output", out_l, "--method", "lightthinker", "--gist-config", "tiny", "--compress-every", 6)
    for v, lt in zip(read(out_v), read(out_l)):
        assert lt["method"] == "lightthinker"
        n = lt["metrics"]["generated_tokens"]
        assert lt["metrics"]["compressions"] == (n - 1) // 6
        if lt["metrics"]["compressions"] >= 2:
            assert lt["metrics"]["peak_kv"] < v["metrics"]["peak_kv"] + 4  # gist blocks replace thoughts
            assert lt["metrics"]["kv_trace"][-1] < v["metrics"]["kv_trace"][-1]


def test_infer_bad_method(model_dir, tmp_path):
    res = CliRunner().invoke(app, ["infer", "--prompt", "hi", "--output", str(tmp_path / "o.jsonl"),
                                   "--method", "nope", "--model", str(model_dir)])
    assert res.exit_code != 0 and "nope" in str(res.exception)


def test_infer_single_prompt_and_prompts_only_file(model_dir, tmp_path):
    out = tmp_path / "p.jsonl"
    invoke("--prompt", "What is 2 + 3?", "--output", out, "--method", "streamingllm", "--budget", 16,
           "--model", model_dir, "--max-new-tokens", 6, "--device", "cpu")
    (row,) = read(out)
    assert row["id"] == "prompt-0" and row["method"] == "streamingllm" and "gold" not in row
    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps({"id": "a", "question": "What is 1 + 1?"}) + "\n")
    invoke("--input", src, "--output", tmp_path / "q_out.jsonl", "--method", "vanilla", "--model", model_dir,
           "--max-new-tokens", 4, "--device", "cpu")
    assert [r["id"] for r in read(tmp_path / "q_out.jsonl")] == ["a"]


def test_infer_reads_gist_config_saved_with_model(model_dir, records, tmp_path):
    from thinkc.gist.config import GistConfig

    GistConfig.load("anllm").save(model_dir / "gist_config.json")
    try:
        out = tmp_path / "a.jsonl"
        invoke("--input", records, "--output", out, "--method", "anllm", "--model", model_dir,
               "--max-new-tokens", 10, "--compress-every", 4, "--device", "cpu")
        rows = read(out)
        assert all(r["metrics"]["compressions"] == (r["metrics"]["generated_tokens"] - 1) // 4 for r in rows)
        assert "<|anchor_0|>" not in rows[0]["text"]  # gist tokens are special: not in the text
    finally:
        (model_dir / "gist_config.json").unlink()


def test_infer_compresses_the_prompt_for_aug_models(model_dir, records, tmp_path):
    """A gist config that compresses the prompt (aug) decodes: the prompt's sentence blocks are fed
    and its sentences leave the cache (the first kept count is below the prompt length)."""
    cfg = tmp_path / "aug.json"
    cfg.write_text(json.dumps({"mode": "aug", "level": "thought", "n_cache": 2, "use_output_token": True}))
    out = tmp_path / "aug.jsonl"
    invoke("--input", records, "--output", out, "--method", "lightthinker", "--model", model_dir,
           "--gist-config", cfg, "--max-new-tokens", 8, "--compress-every", 4, "--device", "cpu")
    for row in read(out):
        assert row["metrics"]["kv_trace"][0] < row["prompt_tokens"]


def test_resume_never_mixes_runs(model_dir, records, tmp_path):
    """Rows are reused only for the same settings and the same prompt: another method, or another
    question under the same id, is refused in one line instead of being silently reused."""
    out = tmp_path / "v.jsonl"
    base = ["--input", records, "--output", out, "--model", model_dir, "--max-new-tokens", 6, "--device", "cpu"]
    invoke(*base, "--method", "vanilla")
    res = CliRunner().invoke(app, ["infer", *map(str, base), "--method", "h2o"])
    assert "other settings" in str(res.exception) and "method='vanilla'" in str(res.exception)
    changed = tmp_path / "changed.jsonl"
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    rows[1]["question"] = "A different question with the same id?"
    changed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(app, ["infer", "--input", str(changed), "--output", str(out), "--model", str(model_dir),
                                   "--max-new-tokens", "6", "--device", "cpu", "--method", "vanilla"])
    assert "another prompt" in str(res.exception)
    assert len(read(out)) == 3  # the earlier rows are untouched
