"""Issue 23: `thinkc eval-lighteval` loads any records file `thinkc data synth` writes (its meta mixes
types: ops = [["+", 12], ...], which Arrow cannot type) and every benchmark layout `thinkc infer`
reads; such meta is carried as JSON text."""
import json
import shutil
from pathlib import Path

import pytest

from _cli import run_cli
from thinkc.errors import ThinkcError

DATA = Path(__file__).parent / "data" / "eval"


def synth(path: Path, n: int) -> list[dict]:
    from thinkc.data.synth import synth_records
    from thinkc.io import write_jsonl

    rows = [r.to_dict() for r in synth_records(n, seed=5)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, rows)
    return rows


def test_untyped_meta_becomes_json_text_and_typed_meta_stays():
    pytest.importorskip("pyarrow")
    from thinkc.eval.lighteval_tasks import arrow_safe
    from thinkc.eval.tasks import load_benchmark

    math = load_benchmark(DATA / "math500")
    assert arrow_safe(math) == (math, [])  # subject / level: Arrow types them, they stay as they are
    mixed = [{"id": "a", "question": "q", "answer": "1", "meta": {"ops": [["+", 12], ["*", 2]]}},
             {"id": "b", "question": "q", "answer": "2", "meta": {"ops": [["-", 3]]}, "choices": ["x", "y"]}]
    safe, untyped = arrow_safe(mixed)
    assert untyped == ["meta"] and json.loads(safe[0]["meta"]) == mixed[0]["meta"]
    assert safe[1]["choices"] == ["x", "y"] and mixed[0]["meta"]["ops"][0] == ["+", 12]  # input untouched


def test_staged_benchmarks_load_in_datasets(tmp_path):
    """Every layout `thinkc infer` reads, staged: a synth records file under another name, GSM8K, a
    GPQA CSV; `datasets` (what lighteval reads with) loads each one."""
    datasets = pytest.importorskip("datasets")
    from thinkc.eval.lighteval_tasks import JSON_FIELDS_COLUMN, STAGED_COLUMN, stage_benchmarks
    from thinkc.eval.tasks import load_benchmark

    root = tmp_path / "bench"
    rows = synth(root / "records" / "train.test.jsonl", 3)  # the one file in the folder, as `thinkc infer -i` reads it
    shutil.copytree(DATA / "gsm8k", root / "gsm8k")
    (root / "gpqa_diamond").mkdir()
    shutil.copy(DATA / "gpqa" / "gpqa_diamond.csv", root / "gpqa_diamond" / "diamond.csv")
    from thinkc.eval.lighteval_tasks import arrow_safe

    with pytest.raises((TypeError, ValueError)):  # issue 23: lighteval saves its Docs so, and Arrow cannot type meta.ops
        datasets.Dataset.from_list(rows)
    assert len(datasets.Dataset.from_list(arrow_safe(rows)[0])) == 3
    dest = stage_benchmarks(root, ["thinkc", "gsm8k", "gpqa"], tmp_path / "staged")
    for folder, source in (("records", root / "records"), ("gsm8k", root / "gsm8k"), ("gpqa_diamond", root / "gpqa_diamond")):
        ds = datasets.load_dataset(str(dest / folder), split="test", cache_dir=str(tmp_path / "cache"))
        recs = [json.loads(r[STAGED_COLUMN]) for r in ds]
        assert [r["id"] for r in recs] == [r["id"] for r in load_benchmark(source)]
        if folder == "records":
            assert json.loads(ds[0][JSON_FIELDS_COLUMN]) == ["meta"]
            assert json.loads(recs[0]["meta"]) == rows[0]["meta"]
    with pytest.raises(ThinkcError, match=r"aime: no such folder .*test\.jsonl"):
        stage_benchmarks(root, ["aime"], tmp_path / "staged2")


@pytest.mark.slow  # lighteval's imports and a tiny decode (~15 s)
def test_eval_lighteval_runs_on_synth_records_and_writes_results(tmp_path, monkeypatch, capsys, one_torch_thread):
    pytest.importorskip("lighteval")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("THINKC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")
    code, _, err = run_cli(monkeypatch, capsys, "data", "synth", "-o", "bench/records/test.jsonl", "-n", "3")
    assert code in (0, None), err
    code, out, err = run_cli(monkeypatch, capsys, "eval-lighteval", "-t", "records", "--root", "bench", "-m", "vanilla",
                             "--model", "tiny-sft", "--max-new-tokens", "8", "--output-dir", "out")
    assert code in (0, None), err
    assert "thinkc_records|0" in out and "wrote lighteval results under out" in out
    (results,) = (tmp_path / "out").rglob("results_*.json")
    assert json.loads(results.read_text())["results"]["thinkc_records|0"]["thinkc_match"] == 0.0  # 8 tokens: no answer yet
    assert list((tmp_path / "out").rglob("details_*.parquet"))  # the details hold the Docs: meta as JSON text
