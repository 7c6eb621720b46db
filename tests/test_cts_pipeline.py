"""CTS pipeline: one output per ratio, records preserved except thinking, kill -9 + resume gives
byte-identical outputs, shards + merge, refusal of a store made with other settings, the CLI."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from thinkc.cts.pipeline import CtsJob, output_path, run
from thinkc.cts.store import load_store
from thinkc.errors import ThinkcError
from thinkc.models.tiny import tiny_model

WORKER = Path(__file__).with_name("_cts_resume_worker.py")
THOUGHTS = ["Let me compute. 12 + 7 = 19.", "Hmm, let me double-check that. Wait, 19 - 5 = 14.",
            "Okay, so we know that the total is the sum of the parts.", "日本 😀 6 * 8 = 48."]


def _write_input(path: Path, n=12):
    recs = [{"id": f"p{i}", "question": f"Q{i}?", "thinking": "\n\n".join(THOUGHTS[i % 4:] + THOUGHTS[: i % 3]),
             "answer": f"So \\boxed{{{i}}}.", "system": "sys", "meta": {"source": "test", "k": i}} for i in range(n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return recs


def _job(tmp, **kw):
    kw = {"chunk_size": 3, "batch_size": 4, "window": 16, **kw}
    return CtsJob(input=tmp / "in.jsonl", output=str(tmp / "out.jsonl"), ratios=[0.5, 0.7], **kw)


def test_outputs_per_ratio_keep_records(tmp_path, tokenizer):
    recs = _write_input(tmp_path / "in.jsonl")
    model = tiny_model("llama", vocab_size=len(tokenizer))
    rows = run(_job(tmp_path), model=model, tokenizer=tokenizer)
    assert [r["ratio"] for r in rows] == [0.5, 0.7]
    for row in rows:
        out = [json.loads(l) for l in output_path(str(tmp_path / "out.jsonl"), row["ratio"]).open(encoding="utf-8")]
        assert [o["id"] for o in out] == [r["id"] for r in recs]
        for o, r in zip(out, recs):
            assert o["answer"] == r["answer"] and o["question"] == r["question"] and o["system"] == r["system"]
            assert o["meta"]["source"] == "test" and o["meta"]["k"] == r["meta"]["k"]
            c = o["meta"]["cts"]
            assert c["ratio"] == row["ratio"] and c["backend"] == "native"
            n = len(tokenizer(r["thinking"], add_special_tokens=False)["input_ids"])
            assert c["tokens_before"] == n and c["tokens_kept"] == int(np.floor(row["ratio"] * n + 0.5))
            assert c["tokens_after"] == len(tokenizer(o["thinking"], add_special_tokens=False)["input_ids"])
            assert "\ufffd" not in o["thinking"]
        assert row["tokens_before"] == sum(o["meta"]["cts"]["tokens_before"] for o in out)


def test_output_pattern():
    assert output_path("d/out.jsonl", 0.5) == Path("d/out.r0.5.jsonl")
    assert output_path("d/cts-{ratio}.jsonl", 0.7) == Path("d/cts-0.7.jsonl")


def test_kill_9_then_resume_is_byte_identical(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _write_input(tmp_path / "in.jsonl", n=10)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def args(d, *extra):
        return [sys.executable, str(WORKER), str(tmp_path / "in.jsonl"), str(d / "out.jsonl"), str(d / "scores"), *extra]

    subprocess.run(args(tmp_path / "a"), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(args(tmp_path / "b", "slow"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "b" / "scores" / "shard-0-of-1" / "chunk-000000.npz"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    chunks = list((tmp_path / "b" / "scores" / "shard-0-of-1").glob("chunk-*.npz"))
    assert 1 <= len(chunks) < 5, "the kill must land mid-run"
    assert not (tmp_path / "b" / "out.r0.5.jsonl").exists()
    subprocess.run(args(tmp_path / "b"), check=True, env=env, capture_output=True)
    for r in (0.5, 0.7):
        assert (tmp_path / "a" / f"out.r{r}.jsonl").read_bytes() == (tmp_path / "b" / f"out.r{r}.jsonl").read_bytes()


def test_shards_then_merge(tmp_path, tokenizer):
    _write_input(tmp_path / "in.jsonl", n=7)
    model = tiny_model("qwen2", vocab_size=len(tokenizer))
    assert run(_job(tmp_path, shard=(0, 2)), model=model, tokenizer=tokenizer) == []
    with pytest.raises(ThinkcError, match="remaining shards"):
        run(_job(tmp_path, merge=True), model=model, tokenizer=tokenizer)
    assert run(_job(tmp_path, shard=(1, 2)), model=model, tokenizer=tokenizer) == []
    rows = run(_job(tmp_path, merge=True), model=model, tokenizer=tokenizer)
    assert [r["records"] for r in rows] == [7, 7]
    merged = load_store(tmp_path / "out.cts-native")
    single = tmp_path / "single"
    run(_job(tmp_path, scores=single), model=model, tokenizer=tokenizer)
    alone = load_store(single)
    assert sorted(merged) == sorted(alone)
    for k in merged:
        assert merged[k]["ids"].tolist() == alone[k]["ids"].tolist()
        np.testing.assert_allclose(merged[k]["scores"], alone[k]["scores"], atol=1e-5)


def test_store_made_with_other_settings_is_refused(tmp_path, tokenizer):
    _write_input(tmp_path / "in.jsonl", n=4)
    run(_job(tmp_path), model=tiny_model("qwen2", vocab_size=len(tokenizer)), tokenizer=tokenizer)
    with pytest.raises(ThinkcError, match="other settings"):
        run(_job(tmp_path, chunk_size=2), model=tiny_model("qwen2", vocab_size=len(tokenizer)), tokenizer=tokenizer)


def test_bad_input_is_a_clear_error(tmp_path, tokenizer):
    (tmp_path / "in.jsonl").write_text('{"id": "x", "thinking": 3, "answer": "a"}\n', encoding="utf-8")
    with pytest.raises(ThinkcError, match="in.jsonl:1: field 'thinking'"):
        run(_job(tmp_path), model=tiny_model("qwen2", vocab_size=len(tokenizer)), tokenizer=tokenizer)


def test_cli_data_cts(tmp_path, tokenizer):
    import typer
    from typer.testing import CliRunner

    from thinkc.cli import cts

    folder = tmp_path / "ref"
    tiny_model("qwen2", vocab_size=len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _write_input(tmp_path / "in.jsonl", n=3)
    app = typer.Typer()
    cts.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `cts` a named sub-command
    res = CliRunner().invoke(app, ["cts", "-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o-{ratio}.jsonl"),
                                   "-m", str(folder), "-r", "0.5", "-r", "0.8", "--force-keep-digits"])
    assert res.exit_code == 0, res.output
    assert "achieved" in res.output
    for r in ("0.5", "0.8"):
        out = [json.loads(l) for l in (tmp_path / f"o-{r}.jsonl").open(encoding="utf-8")]
        assert len(out) == 3 and all(o["meta"]["cts"]["ratio"] == float(r) for o in out)
