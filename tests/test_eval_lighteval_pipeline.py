"""lighteval's Pipeline, offline, decoding through thinkc's engine: on the shipped tiny
checkpoints it gives the per-sample verdicts and accuracy of `thinkc infer` + `thinkc eval`."""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("lighteval")
pytestmark = pytest.mark.slow  # lighteval imports and tiny-model decoding

from thinkc.eval.metrics import evaluate_runs  # noqa: E402

DATA = Path(__file__).parent / "data" / "eval"


def _records(n: int) -> list[dict]:
    """`n` problems of the tiny checkpoints' task (the synth defaults)."""
    from thinkc.data.synth import synth_records

    return [r.to_dict() for r in synth_records(n, seed=123)]


def test_lighteval_doc_prompt_equals_infer_prompt(tmp_path):
    """Fast: the tokens the thinkc model class feeds for a lighteval Doc are `thinkc infer`'s
    (chat template + "<think>\\n"), for a math and a GPQA record."""
    from thinkc.eval.lighteval_tasks import doc_for
    from thinkc.eval.tasks import load_benchmark, prompt_ids
    from thinkc.infer.run import load_inputs, prepare

    _, tok, _, build, _ = prepare("lightthinker", "tiny-lightthinker")
    for path in (DATA / "math500", DATA / "gpqa" / "gpqa_diamond.csv"):
        infer_recs = load_inputs(path)
        for rec in load_benchmark(path):
            doc = doc_for(rec)
            (same,) = [r for r in infer_recs if r["id"] == rec["id"]]
            assert build(doc.specific["record"]) == build(same) == prompt_ids(rec, tok)
            text = tok.decode(build(same))
            assert text.endswith("<|im_start|>assistant\n<think>\n") and rec["question"] in text


@pytest.mark.parametrize("method,model", [("lightthinker", "tiny-lightthinker"), ("vanilla", "tiny-sft")])
def test_lighteval_path_equals_infer_and_eval(tmp_path, method, model):
    from thinkc.cli.main import app
    from thinkc.eval.lighteval_run import evaluate_with_lighteval

    root = tmp_path / "bench"
    (root / "records").mkdir(parents=True)
    data = root / "records" / "test.jsonl"
    opts = dict(max_new_tokens=48, batch_size=50)

    def infer(records: list[dict], run: Path) -> None:
        data.write_text("".join(json.dumps(r) + "\n" for r in records))
        res = CliRunner().invoke(app, ["infer", "--input", str(data), "--output", str(run), "--method", method,
                                       "--model", model, "--max-new-tokens", "48", "--batch-size", "50",
                                       "--device", "cpu"], catch_exceptions=False)
        assert res.exit_code == 0, res.output

    # The shipped checkpoints solve none of these problems (0% on the R1-length task): a first run
    # gives the (deterministic) predictions, and every other gold answer is set to the model's own,
    # so that both verdicts occur and the comparison below can fail.
    records = _records(50)
    infer(records, tmp_path / "probe.jsonl")
    preds = {r["id"]: r.get("pred") for r in map(json.loads, (tmp_path / "probe.jsonl").read_text().splitlines())}
    for i, r in enumerate(records):
        if i % 2 == 0 and preds.get(r["id"]):
            r["answer"] = f"The answer is \\boxed{{{preds[r['id']]}}}."
    run = tmp_path / f"{method}.jsonl"
    infer(records, run)
    rows, (summary,) = evaluate_runs([run], data)
    ours = {r["id"]: r["correct"] for r in rows}

    result = evaluate_with_lighteval("records", root, method=method, model=model, **opts)
    samples = result.samples["thinkc_records|0"]
    theirs = {s["id"]: s["metrics"]["thinkc_match"] == 1.0 for s in samples}
    texts = {r["id"]: r["text"] for r in rows}
    assert len(theirs) == 50 and {s["id"]: s["text"] for s in samples} == texts  # same generations
    assert theirs == ours  # same per-sample verdicts
    assert result.accuracy("thinkc_records|0") == pytest.approx(summary.accuracy)
    assert 0 < summary.accuracy < 1  # some right, some wrong: the comparison can fail
    assert all(s["row"]["metrics"]["peak_kv"] > 0 for s in samples)  # thinkc's measurements come back


def test_eval_lighteval_command(tmp_path):
    import shutil

    from thinkc.cli.main import app
    from thinkc.errors import ThinkcError

    root = tmp_path / "bench"
    shutil.copytree(DATA / "math500", root / "math500")
    args = ["eval-lighteval", "--tasks", "math500", "--root", str(root), "--method", "vanilla", "--model", "tiny-sft",
            "--max-new-tokens", "8", "--max-samples", "2", "--output-dir", str(tmp_path / "out")]
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "thinkc_math500|0" in res.output and "thinkc_match" in res.output
    assert list((tmp_path / "out").rglob("results_*.json"))  # lighteval's own results file
    res = CliRunner().invoke(app, [*args[:3], "--root", str(tmp_path / "none")])
    assert isinstance(res.exception, ThinkcError) and "test.jsonl" in str(res.exception)


def test_lighteval_leaves_autograd_on(tmp_path):
    """lighteval's transformers backend turns autograd off at import; evaluating through thinkc must
    leave the process as it found it (a later training step in the same process needs gradients)."""
    import torch

    from thinkc.eval.lighteval_run import evaluate_with_lighteval

    root = tmp_path / "bench"
    (root / "records").mkdir(parents=True)
    (root / "records" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(2)))
    assert torch.is_grad_enabled()
    evaluate_with_lighteval("records", root, method="vanilla", model="tiny-sft", max_new_tokens=4, batch_size=2)
    assert torch.is_grad_enabled()
