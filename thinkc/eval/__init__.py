"""Evaluation: answer extraction + math-verify checking, per-method metrics, reports, plots,
local benchmark loaders and a lighteval custom-task module."""
from thinkc.eval.answers import extract_answer, is_correct
from thinkc.eval.metrics import (
    MethodSummary,
    evaluate_runs,
    summarize,
    vanilla_dependency,
    vanilla_peak,
)
from thinkc.eval.tasks import load_benchmark

__all__ = [
    "MethodSummary", "evaluate_runs", "extract_answer", "is_correct", "load_benchmark", "summarize",
    "vanilla_dependency", "vanilla_peak",
]
