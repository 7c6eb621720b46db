"""Local benchmark loaders on hand-made files in each dataset's real layout."""
import json
from pathlib import Path

import pytest

from thinkc.errors import ThinkcError
from thinkc.eval.tasks import load_benchmark

DATA = Path(__file__).parent / "data" / "eval"


def test_math500_folder_with_test_jsonl():
    recs = load_benchmark(DATA / "math500")
    assert [r["id"] for r in recs] == ["test/prealgebra/9001.json", "test/algebra/9002.json", "test/geometry/9003.json"]
    assert recs[0]["answer"] == "\\frac{3}{4}" and recs[1]["answer"] == "\\{-2, 2\\}"
    assert recs[0]["question"].startswith("What is") and recs[0]["source"] == "math500"
    assert recs[2]["meta"] == {"subject": "Geometry", "level": 1}


def test_aime_both_layouts():
    y24 = load_benchmark(DATA / "aime" / "aime_2024.jsonl")
    assert [(r["id"], r["answer"]) for r in y24] == [("2024-I-1", "401"), ("2024-I-2", "9")]
    y25 = load_benchmark(DATA / "aime" / "aime_2025.jsonl", name="aime")
    assert [(r["id"], r["answer"]) for r in y25] == [("0", "156"), ("1", "1000")]
    assert y25[1]["question"] == "Compute $2^{10} - 24$."


def test_gsm8k_gold_after_hashes():
    recs = load_benchmark(DATA / "gsm8k")
    assert [r["answer"] for r in recs] == ["10", "1200"]
    assert recs[0]["source"] == "gsm8k"
    # no id field in openai/gsm8k: the id is a hash of the question, never the row position
    assert all(r["id"].startswith("gsm8k-") and len(r["id"]) == len("gsm8k-") + 12 for r in recs)
    again = load_benchmark(DATA / "gsm8k")
    assert [r["id"] for r in again] == [r["id"] for r in recs]


def _gsm_rows(n: int) -> list[dict]:
    return [{"question": f"Sam has {k} pens and buys {k + 1} more. How many pens?",
             "answer": f"{k} + {k + 1} = <<{k}+{k + 1}={2 * k + 1}>>{2 * k + 1}\n#### {2 * k + 1}"} for k in range(n)]


def test_gsm8k_ids_follow_rows_not_positions(tmp_path):
    rows = _gsm_rows(6)
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    full.write_text("".join(json.dumps(r) + "\n" for r in rows))
    part.write_text("".join(json.dumps(r) + "\n" for r in rows[3:5]))
    gold = {r["id"]: r["answer"] for r in load_benchmark(full)}
    sliced = load_benchmark(part)
    assert [gold[r["id"]] for r in sliced] == [r["answer"] for r in sliced] == ["7", "9"]
    # a copy with the file's own idx keeps it
    with_idx = tmp_path / "idx.jsonl"
    with_idx.write_text("".join(json.dumps({"idx": 100 + k, **r}) + "\n" for k, r in enumerate(rows[:2])))
    assert [r["id"] for r in load_benchmark(with_idx)] == ["100", "101"]


def test_json_array_saved_as_jsonl(tmp_path):
    p = tmp_path / "math.jsonl"
    rows = [json.loads(line) for line in (DATA / "math500" / "test.jsonl").read_text().splitlines()]
    p.write_text(json.dumps(rows, indent=1))
    assert [r["answer"] for r in load_benchmark(p)] == [r["answer"] for r in load_benchmark(DATA / "math500")]
    (tmp_path / "bad.jsonl").write_text('[{"problem": 1},')
    with pytest.raises(ThinkcError, match="not valid JSON"):
        load_benchmark(tmp_path / "bad.jsonl")


def test_gpqa_csv_shuffled_with_a_fixed_seed(tmp_path):
    recs = load_benchmark(DATA / "gpqa" / "gpqa_diamond.csv")
    assert [r["id"] for r in recs] == ["recHandMade0001", "recHandMade0002", "recHandMade0003"]
    correct = ["Nitrogen", "Newton", "Mitochondrion"]
    for rec, right in zip(recs, correct):
        assert sorted(rec["choices"]) == sorted(set(rec["choices"])) and len(rec["choices"]) == 4
        assert rec["choices"]["ABCD".index(rec["answer"])] == right  # the gold letter points at it
        assert f"{rec['answer']}) {right}" in rec["question"]
    assert recs[2]["meta"]["question"].endswith('"normally"?')
    # same seed -> same letters, also for a reordered subset; another seed reshuffles somewhere
    again = load_benchmark(DATA / "gpqa" / "gpqa_diamond.csv", seed=0)
    assert [r["choices"] for r in again] == [r["choices"] for r in recs]
    jsonl = tmp_path / "gpqa.jsonl"
    import csv
    rows = list(csv.DictReader(open(DATA / "gpqa" / "gpqa_diamond.csv", encoding="utf-8")))
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    reordered = {r["id"]: r["answer"] for r in load_benchmark(jsonl, name="gpqa")}
    assert reordered == {r["id"]: r["answer"] for r in recs}
    other = [load_benchmark(DATA / "gpqa" / "gpqa_diamond.csv", seed=s) for s in range(1, 6)]
    assert any([r["choices"] for r in o] != [r["choices"] for r in recs] for o in other)


def test_thinkc_records_pass_through_with_boxed_gold():
    recs = load_benchmark(DATA / "records.jsonl")
    assert [r["answer"] for r in recs] == ["12", "\\frac{1}{2}", "7", "30\\text{ km}"]


def test_parquet_layout(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    rows = [json.loads(line) for line in (DATA / "aime" / "aime_2024.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "aime_2024_problems.parquet")
    assert [r["answer"] for r in load_benchmark(tmp_path)] == ["401", "9"]


def test_clear_errors(tmp_path):
    with pytest.raises(ThinkcError, match="no such file"):
        load_benchmark(tmp_path / "nope")
    with pytest.raises(ThinkcError, match="unknown benchmark 'mmlu'"):
        load_benchmark(DATA / "gsm8k", name="mmlu")
    (tmp_path / "odd.jsonl").write_text('{"foo": 1}\n')
    with pytest.raises(ThinkcError, match="unknown benchmark layout"):
        load_benchmark(tmp_path / "odd.jsonl")
    (tmp_path / "m.jsonl").write_text('{"problem": "p"}\n')
    with pytest.raises(ThinkcError, match="has no 'answer' field"):
        load_benchmark(tmp_path / "m.jsonl", name="math500")
    dup = tmp_path / "dup.jsonl"
    dup.write_text((DATA / "aime" / "aime_2025.jsonl").read_text().replace('"id": "1"', '"id": "0"'))
    with pytest.raises(ThinkcError, match="duplicate id '0'"):
        load_benchmark(dup)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ThinkcError, match="no .jsonl"):
        load_benchmark(empty)


def test_prompts_only_records_keep_system(tmp_path):
    p = tmp_path / "prompts.jsonl"
    p.write_text('{"id": 1, "question": "2+2?", "system": "Be brief."}\n')
    (rec,) = load_benchmark(p)
    assert rec == {"id": "1", "question": "2+2?", "answer": None, "system": "Be brief.", "source": "thinkc"}


def test_think_prefill_template_renders_the_thinkc_prompt(tokenizer):
    from thinkc.eval.tasks import prompt_ids, think_prefill_template

    rec = {"id": "1", "question": "What is 2 + 3?", "system": "Be brief."}
    msgs = [{"role": "system", "content": rec["system"]}, {"role": "user", "content": rec["question"]}]
    template = think_prefill_template(tokenizer.chat_template)
    assert think_prefill_template(template) == template  # applied once
    rendered = tokenizer.apply_chat_template(msgs, chat_template=template, tokenize=False, add_generation_prompt=True)
    assert rendered == tokenizer.decode(prompt_ids(rec, tokenizer)) and rendered.endswith("assistant\n<think>\n")
    plain = tokenizer.apply_chat_template(msgs, chat_template=template, tokenize=False, add_generation_prompt=False)
    assert "<think>" not in plain
