"""lighteval cross-check: its extractive-match metric agrees with thinkc's grading, and the custom
tasks load local benchmark folders offline (built-in task registry bypassed)."""
import shutil
from pathlib import Path

import pytest

from thinkc.eval.answers import extract_answer, is_correct
from thinkc.eval.tasks import load_benchmark

pytest.importorskip("lighteval")  # an optional extra (thinkc[lighteval]); installed in dev/CI
pytestmark = pytest.mark.slow  # importing lighteval's metrics pulls sklearn/scipy/transformers (~10 s CPU)

DATA = Path(__file__).parent / "data" / "eval"

# (generated text, gold) — both graders must give the same verdict
CASES = [
    ("Adding them gives \\boxed{0.5}.", "\\frac{1}{2}"),
    ("so \\boxed{\\dfrac{3}{4}}", "0.75"),
    ("The area is \\boxed{9\\text{ cm}^2}", "9"),
    ("We get \\boxed{\\{2, -2\\}}", "\\{-2, 2\\}"),
    ("Therefore \\boxed{12}", "13"),
    ("The answer is \\boxed{401}", "401"),
    ("The correct option is C.\n\nAnswer: C", "C"),
    ("Answer: B", "D"),
]


@pytest.mark.parametrize("text,gold", CASES)
def test_lighteval_agrees_with_is_correct(text, gold):
    from thinkc.eval.lighteval_tasks import score_with_lighteval

    ours = is_correct(extract_answer(text), gold)
    assert score_with_lighteval(text, gold) == ours
    assert score_with_lighteval(extract_answer(text), gold) == ours


def test_custom_tasks_load_local_folders_offline(tmp_path, monkeypatch):
    import datasets.config

    from thinkc.eval.lighteval_tasks import offline_registry, score_with_lighteval

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    root = tmp_path / "bench"
    shutil.copytree(DATA / "math500", root / "math500")
    (root / "gpqa_diamond").mkdir(parents=True)
    shutil.copy(DATA / "gpqa" / "gpqa_diamond.csv", root / "gpqa_diamond" / "test.csv")

    tasks = offline_registry("thinkc_math500|0,thinkc_gpqa_diamond|0", root=root).load_tasks()
    assert set(tasks) == {"thinkc_math500|0", "thinkc_gpqa_diamond|0"}

    math_docs = tasks["thinkc_math500|0"].eval_docs()
    assert [d.choices[0] for d in math_docs] == ["\\boxed{\\frac{3}{4}}", "\\boxed{\\{-2, 2\\}}", "\\boxed{9}"]
    # one definition: the Doc holds the record thinkc's loader gives, its query is the bare question
    ours_math = load_benchmark(DATA / "math500")
    assert [d.specific["record"] for d in math_docs] == ours_math
    assert math_docs[0].query == ours_math[0]["question"] and "Please reason" not in math_docs[0].query

    # GPQA letters are the ones thinkc's loader gives (same per-question seed)
    gpqa_docs = tasks["thinkc_gpqa_diamond|0"].eval_docs()
    ours = [r["answer"] for r in load_benchmark(DATA / "gpqa" / "gpqa_diamond.csv")]
    assert ["ABCD"[d.gold_index] for d in gpqa_docs] == ours

    metric = tasks["thinkc_math500|0"].config.metrics[0].sample_level_fn
    from lighteval.models.model_output import ModelResponse

    assert metric.compute(doc=math_docs[0], model_response=ModelResponse(text=["so \\boxed{0.75}"])) == 1.0
    assert metric.compute(doc=math_docs[0], model_response=ModelResponse(text=["so \\boxed{0.7}"])) == 0.0
    assert score_with_lighteval("Answer: " + ours[0], ours[0])
