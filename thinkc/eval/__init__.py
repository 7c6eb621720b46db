"""Evaluation: one definition per benchmark (loader, prompt, gold, grading) for thinkc and lighteval,
answer extraction and checking with math-verify, per-method metrics, reports and plots."""
from thinkc.eval.answers import extract_answer, grade, is_correct
from thinkc.eval.metrics import (
    MethodSummary,
    evaluate_runs,
    summarize,
    vanilla_dependency,
    vanilla_peak,
)
from thinkc.eval.tasks import load_benchmark, prompt_ids

__all__ = [
    "MethodSummary", "evaluate_runs", "extract_answer", "grade", "is_correct", "load_benchmark", "prompt_ids",
    "summarize", "vanilla_dependency", "vanilla_peak",
]
