"""Run lighteval's Pipeline offline on local benchmark files with thinkc's model class: the
`thinkc eval-lighteval` command and its Python form `evaluate_with_lighteval`.

Its per-sample verdicts (the `thinkc_match` metric) are those of `thinkc infer` + `thinkc eval`
on the same problems: the same records, prompt tokens, decoding and grading. Each benchmark is read
with thinkc's loader and staged for `datasets` first (thinkc.eval.lighteval_tasks.stage_benchmarks),
so any file `thinkc infer` reads loads, whatever its records' `meta` holds.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from thinkc.errors import ThinkcError
from thinkc.eval.lighteval_tasks import TASK_FOLDERS, offline_lighteval, stage_benchmarks, task_name, tasks_module


@dataclass
class LightevalResult:
    results: dict  # lighteval's final results ({"results": {task: {metric: value}}, ...})
    samples: dict[str, list[dict]] = field(default_factory=dict)  # task -> [{id, text, metrics: {...}, row}]

    def accuracy(self, task: str, metric: str = "thinkc_match") -> float:
        """The corpus score of `task` ("thinkc_math500|0"; lighteval keys results "thinkc_math500:0")."""
        return float(self.results["results"][task.replace("|", ":")][metric])


def task_spec(tasks: str) -> str:
    """"math500,gpqa", "records" or "thinkc_math500|0" -> lighteval's "thinkc_math500|0,..."."""
    out = []
    for t in (x.strip() for x in tasks.split(",") if x.strip()):
        name, _, shots = t.partition("|")
        aliases = {**{k: task_name(k) for k in TASK_FOLDERS}, **{f: task_name(k) for k, f in TASK_FOLDERS.items()}}
        name = aliases.get(name, name)
        if name not in {task_name(k) for k in TASK_FOLDERS}:
            raise ThinkcError(f"unknown task {t!r}: choose from {', '.join(task_name(k) for k in TASK_FOLDERS)} "
                              f"(or {', '.join(TASK_FOLDERS)}, {', '.join(TASK_FOLDERS.values())})")
        out.append(f"{name}|{shots or 0}")
    if not out:
        raise ThinkcError("no task given")
    return ",".join(out)


def spec_kinds(spec: str) -> list[str]:
    """The benchmark kinds ("math500", "thinkc", ...) of a lighteval task spec, in order."""
    kinds = {task_name(k): k for k in TASK_FOLDERS}
    return list(dict.fromkeys(kinds[t.split("|")[0]] for t in spec.split(",")))


def evaluate_with_lighteval(tasks: str, root: str | Path, method: str = "lightthinker", model: str | None = None,
                            max_samples: int | None = None, output_dir: str | Path | None = None,
                            **infer_options) -> LightevalResult:
    """lighteval's Pipeline, offline, on `root`/<benchmark>/test.jsonl, decoding with thinkc's engine
    (`infer_options`: ThinkcModelConfig fields such as max_new_tokens, batch_size, gist_config).
    lighteval switches autograd off for the whole process when its transformers backend is imported
    (`torch.set_grad_enabled(False)` at import time); the caller's grad mode is restored here, so a
    training run later in the same process still gets gradients."""
    import torch

    grad = torch.is_grad_enabled()
    try:
        return _evaluate(tasks, root, method, model, max_samples, output_dir, infer_options)
    finally:
        torch.set_grad_enabled(grad)


def _evaluate(tasks, root, method, model, max_samples, output_dir, infer_options) -> LightevalResult:
    try:
        from lighteval.logging.evaluation_tracker import EvaluationTracker
        from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters
    except ImportError as e:
        raise ThinkcError(f"lighteval is not installed ({e}): pip install 'thinkc[lighteval]'") from None

    from thinkc.eval.lighteval_model import ThinkcLightevalModel, ThinkcModelConfig

    spec = task_spec(tasks)
    with tempfile.TemporaryDirectory(prefix="thinkc-lighteval-") as tmp:
        staged = stage_benchmarks(root, spec_kinds(spec), Path(tmp) / "benchmarks")  # before the model loads
        out = Path(output_dir) if output_dir is not None else Path(tmp) / "results"
        config = ThinkcModelConfig(method=method, model=model, cache_dir=str(Path(tmp) / "cache"), **infer_options)
        lm = ThinkcLightevalModel(config)
        params = PipelineParameters(launcher_type=ParallelismManager.NONE,
                                    custom_tasks_directory=tasks_module(staged, staged=True),
                                    max_samples=max_samples, remove_reasoning_tags=False)
        tracker = EvaluationTracker(output_dir=str(out), save_details=output_dir is not None)
        with offline_lighteval():
            pipeline = Pipeline(tasks=spec, pipeline_parameters=params, evaluation_tracker=tracker, model=lm)
        pipeline.evaluate()
        if output_dir is not None:
            pipeline.save_and_push_results()
        results = pipeline.get_results()
    return LightevalResult(results, _samples(tracker, lm))


def _samples(tracker, lm) -> dict[str, list[dict]]:
    """Per task, per sample: the record id, the generation, lighteval's metric values and the
    thinkc row (peak KV, dependency, latency...)."""
    out: dict[str, list[dict]] = {}
    for task, details in tracker.details_logger.details.items():
        rows = []
        for d in details:
            rid = str(d.doc.specific["record"]["id"])
            rows.append({"id": rid, "text": d.model_response.text[0] if d.model_response.text else None,
                         "metrics": dict(d.metric), "row": lm.rows.get(rid)})
        out[task] = rows
    return out
