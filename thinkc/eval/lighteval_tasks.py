"""lighteval custom tasks for local copies of MATH-500, AIME, GPQA-Diamond and GSM8K.

Usage (the CTS paper's benchmarks, on your own files):

    THINKC_BENCHMARKS=/data/bench lighteval accelerate "model_name=..." \\
        "thinkc_math500|0,thinkc_gpqa_diamond|0" --custom-tasks thinkc/eval/lighteval_tasks.py

$THINKC_BENCHMARKS (default ./benchmarks) holds one folder per benchmark — math500/, aime/,
gpqa_diamond/, gsm8k/ — each with the dataset's own file saved as test.jsonl (GPQA may be test.csv),
so `datasets` reads it without the hub. Offline, lighteval 0.13's registry fails while importing its
built-in tasks; `offline_registry()` builds a Registry with only these tasks.

Prompts ask for a \\boxed{} answer (math) or an option letter (GPQA, options shuffled with the same
per-question seed as `thinkc.eval.tasks`, so thinkc and lighteval grade the same letters). Scoring is
lighteval's extractive match (math-verify underneath).
"""
from __future__ import annotations

import os
from pathlib import Path

from thinkc.eval.answers import anchor_math, as_letter
from thinkc.eval.tasks import LETTERS, _aime, _gpqa, _gsm8k, _math500

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CHOICE_INSTRUCTION = ("Answer the following multiple choice question. Think step by step, then end with "
                      "'Answer: X' where X is one of A, B, C, D.")
GPQA_SEED = int(os.environ.get("THINKC_GPQA_SEED", "0"))


def benchmarks_root() -> Path:
    return Path(os.environ.get("THINKC_BENCHMARKS", "benchmarks")).expanduser().resolve()


def _doc(task_name: str, question: str, gold: str):
    from lighteval.tasks.requests import Doc

    # math-verify needs an anchor around LaTeX: the gold goes in as \boxed{...}.
    return Doc(task_name=task_name, query=f"{question}\n\n{MATH_INSTRUCTION}",
               choices=[f"\\boxed{{{gold}}}"], gold_index=0)


def math500_prompt(line: dict, task_name: str = ""):
    rec = _math500(line, 0)
    return _doc(task_name, rec["question"], rec["answer"])


def aime_prompt(line: dict, task_name: str = ""):
    rec = _aime(line, 0)
    return _doc(task_name, rec["question"], rec["answer"])


def gsm8k_prompt(line: dict, task_name: str = ""):
    rec = _gsm8k(line, 0)
    return _doc(task_name, rec["question"], rec["answer"])


def gpqa_prompt(line: dict, task_name: str = ""):
    from lighteval.tasks.requests import Doc

    rec = _gpqa(line, 0, GPQA_SEED)
    query = f"{CHOICE_INSTRUCTION}\n\n{rec['question']}"
    return Doc(task_name=task_name, query=query, choices=list(LETTERS), gold_index=LETTERS.index(rec["answer"]),
               instruction=CHOICE_INSTRUCTION)


def _metric(letters: bool):
    import numpy as np
    from lighteval.metrics.dynamic_metrics import MultilingualExtractiveMatchMetric
    from lighteval.metrics.utils.extractive_match_utils import (
        ExprExtractionConfig,
        IndicesExtractionConfig,
        LatexExtractionConfig,
    )
    from lighteval.metrics.utils.metric_utils import SampleLevelMetric
    from lighteval.tasks.requests import SamplingMethod
    from lighteval.utils.language import Language

    if letters:
        targets = dict(
            gold_extraction_target=[IndicesExtractionConfig(prefix_for_extraction="NativeLetters",
                                                            try_extract_without_anchor=True)],
            pred_extraction_target=[IndicesExtractionConfig(prefix_for_extraction="NativeLetters",
                                                            try_extract_without_anchor=True)],
        )
    else:
        targets = dict(
            gold_extraction_target=(LatexExtractionConfig(), ExprExtractionConfig()),
            # the boxed answer first, as for R1-style outputs
            pred_extraction_target=(LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()),
        )
    return SampleLevelMetric(
        metric_name="extractive_match",
        sample_level_fn=MultilingualExtractiveMatchMetric(language=Language.ENGLISH, precision=6, **targets),
        category=SamplingMethod.GENERATIVE,
        corpus_level_fn=np.mean,
        higher_is_better=True,
    )


def _task(root: Path, name: str, folder: str, prompt, letters: bool = False, generation_size: int = 32768):
    from lighteval.tasks.lighteval_task import LightevalTaskConfig

    return LightevalTaskConfig(
        name=name,
        prompt_function=prompt,
        hf_repo=str(root / folder),  # a local folder: `datasets` reads test.jsonl there
        hf_subset="default",
        hf_avail_splits=["test"],
        evaluation_splits=["test"],
        few_shots_split=None,
        few_shots_select=None,
        generation_size=generation_size,
        metrics=[_metric(letters)],
        stop_sequence=[],
        version=0,
    )


def build_tasks(root: str | Path | None = None) -> list:
    """The four task configs, reading from `root` (default $THINKC_BENCHMARKS or ./benchmarks)."""
    root = Path(root).expanduser().resolve() if root is not None else benchmarks_root()
    return [
        _task(root, "thinkc_math500", "math500", math500_prompt),
        _task(root, "thinkc_aime", "aime", aime_prompt),
        _task(root, "thinkc_gpqa_diamond", "gpqa_diamond", gpqa_prompt, letters=True),
        _task(root, "thinkc_gsm8k", "gsm8k", gsm8k_prompt),
    ]


def score_with_lighteval(pred: str | None, gold: str) -> bool:
    """Grade one answer (or a whole generation) with lighteval's extractive-match metric: the
    cross-check for `thinkc.eval.answers.is_correct`."""
    from lighteval.models.model_output import ModelResponse
    from lighteval.tasks.requests import Doc

    if pred is None:
        return False
    letter = as_letter(gold)
    if letter is not None:
        doc = Doc(query="", choices=list(LETTERS), gold_index=LETTERS.index(letter))
        metric = _metric(letters=True)
    else:
        doc = Doc(query="", choices=[f"\\boxed{{{gold}}}"], gold_index=0)
        metric = _metric(letters=False)
    if letter is not None:
        text = as_letter(pred) or pred  # a bare "b" -> "B": letters are compared case-insensitively
    else:
        text = anchor_math(pred)
    return metric.sample_level_fn.compute(doc=doc, model_response=ModelResponse(text=[text])) == 1.0


def offline_registry(tasks: str, root: str | Path | None = None):
    """A lighteval Registry holding only these tasks (`tasks` like "thinkc_math500|0,thinkc_gsm8k|0"),
    built without importing lighteval's built-in tasks (which need the network in 0.13)."""
    import types
    from unittest import mock

    from lighteval.tasks.registry import Registry

    module = types.ModuleType("thinkc_lighteval_tasks")
    module.TASKS_TABLE = build_tasks(root)
    with mock.patch.object(Registry, "_load_from_files", staticmethod(lambda *a, **k: {})), \
         mock.patch.object(Registry, "_load_from_subdirs", staticmethod(lambda *a, **k: {})):
        return Registry(tasks=tasks, custom_tasks=module)


try:  # lighteval reads TASKS_TABLE when it loads this file with --custom-tasks
    TASKS_TABLE = build_tasks()
except ImportError:  # lighteval not installed: the helpers above still import
    TASKS_TABLE = []
