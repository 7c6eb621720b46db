"""Eval on hand-made infer outputs: known accuracy and metrics, closed forms, verdicts, reports,
clear errors, and the `thinkc eval` command."""
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thinkc.errors import ThinkcError
from thinkc.eval.metrics import evaluate_runs, vanilla_dependency, vanilla_peak
from thinkc.eval.report import default_verdicts_path, markdown, write_summary_json, write_verdicts

DATA = Path(__file__).parent / "data" / "eval"


@pytest.fixture
def runs(tmp_path):
    """Copies of the hand-made runs (verdicts get written next to them)."""
    out = []
    for name in ("vanilla", "lightthinker"):
        shutil.copy(DATA / "runs" / f"{name}.jsonl", tmp_path / f"{name}.jsonl")
        out.append(tmp_path / f"{name}.jsonl")
    return out


def test_known_accuracy_and_metrics(runs):
    rows, summaries = evaluate_runs(runs, DATA / "records.jsonl")
    by = {s.method: s for s in summaries}
    assert [s.method for s in summaries] == ["vanilla", "lightthinker"]
    v, lt = by["vanilla"], by["lightthinker"]
    # vanilla: s1 \boxed{12} ok, s2 0.5 == \frac{1}{2} ok, s3 8 != 7, s4 30 == 30\text{ km} ok
    assert (v.n, v.accuracy) == (4, 0.75)
    # lightthinker: s1 ok, s2 \dfrac{1}{2} ok, s3 no answer, s4 #### 29 != 30
    assert (lt.n, lt.accuracy) == (4, 0.5)
    assert v.mean_tokens == lt.mean_tokens == 5.5
    assert (v.mean_peak_kv, v.max_peak_kv) == (15.5, 17)
    assert (lt.mean_peak_kv, lt.max_peak_kv) == (14.25, 15)
    assert v.dependency_m == pytest.approx((81 + 65 + 50 + 98) / 4 / 1e6)
    # s3 has no dependency key: the mean is over the three rows that have one
    assert lt.dependency_m == pytest.approx((75 + 59 + 82) / 3 / 1e6)
    # per-sample latencies overlap in a batch: averaged, never summed into a time
    assert v.latency_mean_s == 0.5 and lt.latency_mean_s == 0.5  # lightthinker s3 has no wall_s: mean over 3
    assert v.run_wall_s is None and v.tokens_per_s is None  # no run summary beside the runs
    assert (v.compressions, lt.compressions) == (0, 1.25)
    verdicts = {(r["group"], r["id"]): r["correct"] for r in rows}
    assert verdicts[("vanilla", "s3")] is False and verdicts[("lightthinker", "s2")] is True


def test_vanilla_closed_forms_match_the_runs():
    for row in map(json.loads, (DATA / "runs" / "vanilla.jsonl").read_text().splitlines()):
        lp, m = row["prompt_tokens"], row["metrics"]
        lo = m["generated_tokens"]
        assert m["dependency"] == vanilla_dependency(lp, lo) == sum(m["kv_trace"])
        assert m["peak_kv"] == vanilla_peak(lp, lo) == max(m["kv_trace"])
    # sum_{t=1..LO} (LP + t) for a few sizes, against a brute-force sum
    for lp, lo in [(0, 1), (7, 0), (128, 1000), (3, 17)]:
        assert vanilla_dependency(lp, lo) == sum(lp + t for t in range(1, lo + 1))
        assert vanilla_peak(lp, lo) == lp + lo


def test_verdicts_written_next_to_runs_and_to_a_path(runs, tmp_path):
    rows, _ = evaluate_runs(runs, DATA / "records.jsonl")
    written = write_verdicts(rows)
    assert written == [default_verdicts_path(p) for p in runs]
    first = [json.loads(line) for line in written[0].read_text().splitlines()]
    assert [(r["id"], r["pred"], r["correct"]) for r in first] == [
        ("s1", "12", True), ("s2", "0.5", True), ("s3", "8", False), ("s4", "30", True)]
    assert first[0]["gold"] == "12" and "text" in first[0] and "_file" not in first[0]
    combined = write_verdicts(rows, tmp_path / "all" / "verdicts.jsonl")[0]
    assert len(combined.read_text().splitlines()) == 8


def test_json_and_markdown_reports(runs, tmp_path):
    _, summaries = evaluate_runs(runs, DATA / "records.jsonl")
    write_summary_json(tmp_path / "s.json", summaries, reference="records.jsonl")
    data = json.loads((tmp_path / "s.json").read_text())
    assert [m["accuracy"] for m in data["methods"]] == [0.75, 0.5]
    md = markdown(summaries).splitlines()
    assert md[0].startswith("| method | n | acc % |") and len(md) == 4
    assert md[2].startswith("| vanilla | 4 | 75.0 |")


def test_same_method_in_two_files_gets_file_labels(tmp_path):
    for name in ("a", "b"):
        shutil.copy(DATA / "runs" / "vanilla.jsonl", tmp_path / f"{name}.jsonl")
    _, summaries = evaluate_runs([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], DATA / "records.jsonl")
    assert [s.method for s in summaries] == ["vanilla@a", "vanilla@b"]


def test_mismatched_ids_are_listed(tmp_path):
    rows = [json.loads(line) for line in (DATA / "runs" / "vanilla.jsonl").read_text().splitlines()]
    rows[1]["id"], rows[2]["id"] = "nope-1", "nope-2"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ThinkcError, match=r"2 id\(s\).*not in the reference: 'nope-1', 'nope-2'"):
        evaluate_runs([bad], DATA / "records.jsonl")


def test_duplicate_ids_and_missing_files(tmp_path):
    line = (DATA / "runs" / "vanilla.jsonl").read_text().splitlines()[0]
    dup = tmp_path / "dup.jsonl"
    dup.write_text(line + "\n" + line + "\n")
    with pytest.raises(ThinkcError, match="'s1' appears twice"):
        evaluate_runs([dup], DATA / "records.jsonl")
    with pytest.raises(ThinkcError, match="no such file"):
        evaluate_runs([tmp_path / "missing.jsonl"], DATA / "records.jsonl")
    with pytest.raises(ThinkcError, match="no such file"):
        evaluate_runs([dup], tmp_path / "missing-reference.jsonl")


def test_eval_command(runs, tmp_path):
    from thinkc.cli.main import app

    result = CliRunner().invoke(app, [
        "eval", *map(str, runs), "--reference", str(DATA / "records.jsonl"),
        "--json", str(tmp_path / "out.json"), "--markdown", str(tmp_path / "out.md"),
        "--plots", str(tmp_path / "plots"),
    ])
    assert result.exit_code == 0, result.output
    assert "vanilla" in result.output and "lightthinker" in result.output and "75.0" in result.output
    assert json.loads((tmp_path / "out.json").read_text())["methods"][1]["accuracy"] == 0.5
    assert "| lightthinker | 4 | 50.0 |" in (tmp_path / "out.md").read_text()
    assert (tmp_path / "plots" / "kv_trace.png").stat().st_size > 1000
    assert default_verdicts_path(runs[0]).is_file()


def test_eval_command_reports_a_bad_reference_as_an_error(runs, tmp_path):
    from thinkc.cli.main import app

    result = CliRunner().invoke(app, ["eval", str(runs[0]), "--reference", str(tmp_path / "none.jsonl")])
    assert result.exit_code != 0 and isinstance(result.exception, ThinkcError)


def _write_run(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_benchmark_layouts_as_reference(tmp_path):
    from thinkc.eval.tasks import load_benchmark

    gpqa = load_benchmark(DATA / "gpqa" / "gpqa_diamond.csv")
    wrong = next(c for c in "ABCD" if c != gpqa[1]["answer"])
    run = _write_run(tmp_path / "gpqa_run.jsonl", [
        {"id": gpqa[0]["id"], "method": "vanilla", "text": f"Thinking...\n\nAnswer: {gpqa[0]['answer'].lower()}"},
        {"id": gpqa[1]["id"], "method": "vanilla", "text": f"\\boxed{{{wrong}}}"},
        {"id": gpqa[2]["id"], "method": "vanilla", "text": f"It must be ({gpqa[2]['answer']})."},
    ])
    _, (summary,) = evaluate_runs([run], DATA / "gpqa" / "gpqa_diamond.csv")
    assert summary.n == 3 and summary.accuracy == pytest.approx(2 / 3)
    assert summary.mean_tokens is None and summary.latency_mean_s is None  # metrics absent: lenient

    gsm = load_benchmark(DATA / "gsm8k")
    run = _write_run(tmp_path / "gsm_run.jsonl", [
        {"id": gsm[0]["id"], "method": "cts", "text": "12 - 2 = 10\n#### 10"},
        {"id": gsm[1]["id"], "method": "cts", "text": "So it costs $1,200 in total."},
    ])
    _, (summary,) = evaluate_runs([run], DATA / "gsm8k")
    assert summary.accuracy == 1.0


def test_gold_copied_by_infer_is_used_without_reference(tmp_path):
    rows = [json.loads(line) for line in (DATA / "runs" / "vanilla.jsonl").read_text().splitlines()]
    golds = {"s1": "12", "s2": "\\frac{1}{2}", "s3": "7", "s4": "30"}
    run = _write_run(tmp_path / "with_gold.jsonl", [{**r, "gold": golds[r["id"]]} for r in rows])
    _, (summary,) = evaluate_runs([run])
    assert summary.accuracy == 0.75
    no_gold = _write_run(tmp_path / "no_gold.jsonl", rows)
    with pytest.raises(ThinkcError, match="no gold answer; pass --reference"):
        evaluate_runs([no_gold])


def test_run_time_comes_from_the_run_summary_not_a_sum(runs):
    from thinkc.eval.metrics import write_run_totals

    assert write_run_totals(runs[0], 0.8, 22, 4) == runs[0].with_name("vanilla.summary.json")
    _, summaries = evaluate_runs(runs, DATA / "records.jsonl")
    v, lt = summaries
    # 4 samples of 0.5 s each decoded together in 0.8 s: the run took 0.8 s, not 2.0 s
    assert (v.latency_mean_s, v.run_wall_s, v.tokens_per_s) == (0.5, 0.8, pytest.approx(22 / 0.8))
    assert lt.run_wall_s is None
    assert "latency s" in markdown(summaries) and "wall s" not in markdown(summaries)


def test_slice_graded_against_another_file_is_an_error(tmp_path):
    """GSM8K rows 3-4 run on their own, graded with --reference against the full file: ids come
    from the questions, so each answer meets its own gold; against a file where the same ids mean
    other questions, the gold infer copied disagrees and eval says so instead of scoring 0/N."""
    rows = [{"question": f"Ann has {k} cats and gets {k} more. How many cats?",
             "answer": f"{k} + {k} = {2 * k}\n#### {2 * k}"} for k in range(1, 7)]
    full = tmp_path / "gsm8k_full.jsonl"
    full.write_text("".join(json.dumps(r) + "\n" for r in rows))
    part = tmp_path / "gsm8k_part.jsonl"
    part.write_text("".join(json.dumps(r) + "\n" for r in rows[3:5]))
    from thinkc.eval.tasks import load_benchmark

    sliced = load_benchmark(part)
    run = _write_run(tmp_path / "slice_run.jsonl", [
        {"id": r["id"], "method": "vanilla", "gold": r["answer"], "text": f"The answer is {r['answer']}."}
        for r in sliced])
    _, (summary,) = evaluate_runs([run], full)
    assert (summary.n, summary.accuracy) == (2, 1.0)
    # position-style ids that mean other questions in the reference
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"id": r["id"], "question": "?", "answer": "999"}) + "\n" for r in sliced))
    with pytest.raises(ThinkcError, match="different gold answer"):
        evaluate_runs([run], other)
