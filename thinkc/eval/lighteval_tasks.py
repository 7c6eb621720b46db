"""lighteval tasks for local copies of MATH-500, AIME, GPQA-Diamond, GSM8K and thinkc records,
built from the benchmark definitions in thinkc.eval.tasks (one loader, prompt and grading for
thinkc and lighteval alike).

Offline (no hub, no hand patching), from Python:

    from thinkc.eval.lighteval_run import evaluate_with_lighteval
    result = evaluate_with_lighteval("thinkc_math500|0", root="/data/bench", method="lightthinker",
                                     model="tiny-lightthinker")

or `thinkc eval-lighteval --tasks thinkc_math500 --root /data/bench --method lightthinker`.
`root` (default $THINKC_BENCHMARKS or ./benchmarks) holds one folder per benchmark — math500/,
aime/, gpqa_diamond/, gsm8k/, records/ — each with the dataset's own file saved as test.jsonl
(GPQA may be test.csv), so `datasets` reads it without the hub. lighteval 0.13's own registry
imports every built-in task and one of them downloads a file: `offline_lighteval()` stops that.

`thinkc eval-lighteval` (thinkc.eval.lighteval_run) first reads every requested benchmark with
thinkc's own loader (any file or folder `thinkc infer` reads: JSONL, JSON, CSV, Parquet; every
layout) and stages it for `datasets` as one JSON text column per record (`stage_benchmarks`), so
Arrow never types a record's fields: thinkc records whose `meta` mixes types (the synthetic task's
`ops`: [["+", 12], ...]) load as they are. Inside the Docs, a field Arrow cannot type across the
task's records (usually `meta`) is carried as JSON text (`doc.specific["json_fields"]` names them),
so lighteval can save its details too. `build_tasks(root)` without staging (lighteval's own
--custom-tasks) leaves the files to `datasets`.

Each Doc carries the thinkc record (`doc.specific["record"]`); its query is the question verbatim,
the user turn `thinkc infer` sends. The thinkc model class (thinkc.eval.lighteval_model) builds the
prompt with `thinkc.eval.tasks.prompt_ids` (chat template + "<think>\\n"), so lighteval and
`thinkc infer` feed the same tokens. lighteval's own backends (transformers, vLLM) build the prompt
from the model's chat template and add no "<think>\\n" unless that template does.

Metrics: `thinkc_match` is thinkc's grading (thinkc.eval.answers.grade: math-verify, letters for
GPQA), the verdict `thinkc eval` gives; `extractive_match` is lighteval's own math-verify metric,
kept as a cross-check.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from thinkc.eval.answers import anchor_math, as_letter, grade
from thinkc.eval.tasks import DEFINITIONS, LETTERS, to_record

GPQA_SEED = int(os.environ.get("THINKC_GPQA_SEED", "0"))
TASK_FOLDERS = {"math500": "math500", "aime": "aime", "gpqa": "gpqa_diamond", "gsm8k": "gsm8k",
                "thinkc": "records"}


def benchmarks_root() -> Path:
    return Path(os.environ.get("THINKC_BENCHMARKS", "benchmarks")).expanduser().resolve()


def task_name(kind: str) -> str:
    """"gpqa" -> "thinkc_gpqa_diamond", "thinkc" -> "thinkc_records"."""
    return f"thinkc_{TASK_FOLDERS[kind]}"


def doc_for(rec: dict, name: str = "", json_fields: tuple = ()):
    """The lighteval Doc of a thinkc record: the question as the query, the record in `specific`
    (`json_fields`: its fields held as JSON text). The choices are what lighteval's extractive match
    compares against: the option letters for GPQA, the gold in \\boxed{} (math-verify needs an
    anchor) otherwise."""
    from lighteval.tasks.requests import Doc

    gold = rec.get("answer")
    specific = {"record": rec, "gold": gold, **({"json_fields": list(json_fields)} if json_fields else {})}
    if DEFINITIONS[rec["source"]].letters or (rec["source"] == "thinkc" and as_letter(gold or "") and
                                               str(gold).isupper()):
        return Doc(task_name=name, query=rec["question"], choices=list(LETTERS),
                   gold_index=LETTERS.index(as_letter(gold)), specific=specific, id=rec["id"])
    return Doc(task_name=name, query=rec["question"], choices=[f"\\boxed{{{gold}}}"], gold_index=0,
               specific=specific, id=rec["id"])


def _prompt_function(kind: str, staged: bool = False):
    def prompt(line: dict, task_name: str = ""):
        if staged:  # a row of stage_benchmarks: the record as JSON text
            return doc_for(json.loads(line[STAGED_COLUMN]), task_name, tuple(json.loads(line[JSON_FIELDS_COLUMN])))
        return doc_for(to_record(line, kind, GPQA_SEED), task_name)

    prompt.__name__ = f"{kind}_prompt"
    return prompt


STAGED_COLUMN = "thinkc_record"
JSON_FIELDS_COLUMN = "thinkc_json_fields"
TYPED_FIELDS = ("id", "question", "answer", "source")  # strings in every record


def arrow_safe(records: list[dict]) -> tuple[list[dict], list[str]]:
    """The records with every field Arrow cannot type across all of them (mixed-type lists such
    as the synthetic task's meta.ops, a key that is a number in one record and text in another)
    replaced by its JSON text; and the names of those fields."""
    import pyarrow as pa

    keys = sorted({k for r in records for k in r} - set(TYPED_FIELDS))
    untyped = []
    for k in keys:
        try:
            pa.array([r.get(k) for r in records])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            untyped.append(k)
    out = [{k: (json.dumps(v, ensure_ascii=False) if k in untyped and v is not None else v) for k, v in r.items()}
           for r in records]
    return out, untyped


def stage_benchmarks(root: str | Path, kinds: list[str], dest: str | Path) -> Path:
    """dest/<folder>/test.jsonl for each benchmark kind: its records read from root/<folder> by
    thinkc's loader (the file or folder layouts `thinkc infer` reads), one JSON text column each
    (Arrow never types them) beside the names of the fields held as JSON text inside. `dest`."""
    from thinkc.errors import ThinkcError
    from thinkc.eval.tasks import load_benchmark
    from thinkc.io import write_jsonl

    root, dest = Path(root).expanduser().resolve(), Path(dest)
    for kind in kinds:
        folder = root / TASK_FOLDERS[kind]
        if not folder.exists():
            raise ThinkcError(f"{folder}: no such folder (lighteval reads each benchmark from "
                              f"<root>/{TASK_FOLDERS[kind]}/, e.g. its test.jsonl, in any layout `thinkc infer` reads)")
        records, untyped = arrow_safe(load_benchmark(folder, seed=GPQA_SEED))
        fields = json.dumps(untyped)
        write_jsonl(dest / TASK_FOLDERS[kind] / "test.jsonl",
                    ({STAGED_COLUMN: json.dumps(r, ensure_ascii=False), JSON_FIELDS_COLUMN: fields} for r in records))
    return dest


def _thinkc_match():
    """thinkc's verdict as a lighteval sample metric: 1.0 when `grade` says correct."""
    import numpy as np
    from lighteval.metrics.metrics_sample import SampleLevelComputation
    from lighteval.metrics.utils.metric_utils import SampleLevelMetric
    from lighteval.tasks.requests import SamplingMethod

    class ThinkcMatch(SampleLevelComputation):
        def compute(self, doc, model_response, **kwargs) -> float:
            # the raw generation, as `thinkc eval` grades the run's `text` (grade itself reads
            # the part after </think>)
            text = model_response.text[0] if model_response.text else None
            return float(grade(text, doc.specific["gold"])[1])

    return SampleLevelMetric(metric_name="thinkc_match", sample_level_fn=ThinkcMatch(),
                             category=SamplingMethod.GENERATIVE, corpus_level_fn=np.mean, higher_is_better=True)


def _extractive_match(letters: bool):
    """lighteval's own math-verify metric (the cross-check)."""
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
        target = [IndicesExtractionConfig(prefix_for_extraction="NativeLetters", try_extract_without_anchor=True)]
        targets = dict(gold_extraction_target=target, pred_extraction_target=target)
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


def _task(root: Path, kind: str, generation_size: int = 32768, staged: bool = False):
    from lighteval.tasks.lighteval_task import LightevalTaskConfig

    return LightevalTaskConfig(
        name=task_name(kind),
        prompt_function=_prompt_function(kind, staged),
        hf_repo=str(root / TASK_FOLDERS[kind]),  # a local folder: `datasets` reads test.jsonl there
        hf_subset="default",
        hf_avail_splits=["test"],
        evaluation_splits=["test"],
        few_shots_split=None,
        few_shots_select=None,
        generation_size=generation_size,
        metrics=[_thinkc_match(), _extractive_match(DEFINITIONS[kind].letters)],
        stop_sequence=[],
        version=0,
    )


def build_tasks(root: str | Path | None = None, staged: bool = False) -> list:
    """The task configs, reading from `root` (default $THINKC_BENCHMARKS or ./benchmarks); `staged`:
    a folder written by `stage_benchmarks`."""
    root = Path(root).expanduser().resolve() if root is not None else benchmarks_root()
    return [_task(root, kind, staged=staged) for kind in TASK_FOLDERS]


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
        text = as_letter(pred) or pred  # a bare "b" -> "B": letters are compared case-insensitively
    else:
        doc = Doc(query="", choices=[f"\\boxed{{{gold}}}"], gold_index=0)
        text = anchor_math(pred)
    metric = _extractive_match(letters=letter is not None)
    return metric.sample_level_fn.compute(doc=doc, model_response=ModelResponse(text=[text])) == 1.0


@contextlib.contextmanager
def offline_lighteval():
    """While active, lighteval's Registry loads no built-in task (lighteval 0.13 imports them all,
    and one downloads a file at import time): only custom tasks exist. thinkc's entry points use it;
    nobody has to patch lighteval by hand."""
    from unittest import mock

    from lighteval.tasks.registry import Registry

    with mock.patch.object(Registry, "_load_from_files", staticmethod(lambda *a, **k: {})), \
         mock.patch.object(Registry, "_load_from_subdirs", staticmethod(lambda *a, **k: {})):
        yield


def tasks_module(root: str | Path | None = None, staged: bool = False):
    """A module object holding TASKS_TABLE, what lighteval's `custom_tasks` accepts."""
    import types

    module = types.ModuleType("thinkc_lighteval_tasks")
    module.TASKS_TABLE = build_tasks(root, staged)
    return module


def offline_registry(tasks: str, root: str | Path | None = None):
    """A lighteval Registry holding only these tasks (`tasks` like "thinkc_math500|0,thinkc_gsm8k|0")."""
    from lighteval.tasks.registry import Registry

    with offline_lighteval():
        return Registry(tasks=tasks, custom_tasks=tasks_module(root))


try:  # lighteval reads TASKS_TABLE when it loads this file with --custom-tasks
    TASKS_TABLE = build_tasks()
except ImportError:  # lighteval not installed: the helpers above still import
    TASKS_TABLE = []
