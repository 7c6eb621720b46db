"""Python API: load a checkpoint (its gist config included) and generate with its cache policy,
LightThinker compression included; the same prompts, decoding and measurements as `thinkc infer`.

    from thinkc.api import load

    lt = load("tiny-lightthinker")  # a local HF folder, "smollm2" or a shipped tiny checkpoint
    outs = lt.generate(["Sam has 48 pencils. He first gets 25 more. He then doubles the pencils. "
                        "He next loses 59. How many pencils does Sam have now?"],
                       max_new_tokens=768)
    for o in outs:
        print(o.answer, o.metrics["peak_kv"], o.metrics["compressions"], o.metrics["wall_s"])

Plain `model.generate` (or vLLM / SGLang) cannot run a gist model: after each thought the model
emits the trigger <w>, and only thinkc's engine then inserts the cache tokens, lets them attend to
the thought, and evicts the thought's keys and values; without that the model reads a context it
was never trained on and degrades (docs/evaluation.md, "LightThinker outside thinkc").
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from thinkc.errors import ThinkcError


@dataclass
class Generation:
    id: str
    text: str  # the decoded continuation after the prompt (thinking, "</think>", answer)
    answer: str | None  # the extracted final answer (thinkc.eval.answers.extract_answer)
    prompt_tokens: int
    metrics: dict = field(default_factory=dict)  # wall_s (own latency), generated_tokens, peak_kv, dependency, ...
    row: dict = field(default_factory=dict)  # the `thinkc infer` output row


class Model:
    """A loaded model with its cache policy (`method`): vanilla, lightthinker, anllm, h2o, sepllm
    or streamingllm, as `thinkc infer --method`."""

    def __init__(self, model: str | None = None, method: str = "lightthinker", gist_config: str | None = None,
                 device: str = "cpu", dtype: str | None = None, budget: int | None = None, window: int | None = None):
        from thinkc.infer.policies import METHODS
        from thinkc.infer.run import prepare

        if method not in METHODS:
            raise ThinkcError(f"method {method!r}: choose one of {', '.join(METHODS)}")
        self.method = method
        self._extra = {k: v for k, v in {"budget": budget, "window": window, "gist_config": gist_config}.items()
                       if v is not None}
        self.model, self.tokenizer, self.policy, self._build, self.label = prepare(
            method, model, gist_config, budget, window, device, dtype)

    def prompt_ids(self, question: str | dict) -> list[int]:
        """The prompt tokens fed for a question: chat template, then "<think>\\n" (as in training)."""
        built = self._build(_record(question, 0))
        return built if isinstance(built, list) else built.input_ids.tolist()

    def generate(self, questions: str | list, max_new_tokens: int = 1024, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int = 0, batch_size: int = 8,
                 compress_every: int | None = None, kv_budget: int | None = None) -> list[Generation]:
        """Decode every question (a string, or a record dict with question and optional id/system)
        with continuous batching; one Generation per question, in order. `kv_budget`: KV tokens for
        all rows together (a paged pool, as `thinkc infer --kv-budget`; the same greedy texts)."""
        from thinkc.infer.run import InferSettings, run_inference
        from thinkc.infer.sampling import SamplingConfig

        items = [questions] if isinstance(questions, (str, dict)) else list(questions)
        if not items:
            return []
        records = [_record(q, i) for i, q in enumerate(items)]
        settings = InferSettings(method=self.method, model_label=self.label, batch_size=batch_size,
                                 max_new_tokens=max_new_tokens, sampling=SamplingConfig(temperature, top_p, seed),
                                 compress_every=compress_every, extra=dict(self._extra), kv_budget=kv_budget)
        with tempfile.TemporaryDirectory(prefix="thinkc-generate-") as tmp:
            rows = run_inference(self.model, self.tokenizer, records, self.policy, settings, self._build,
                                 Path(tmp) / "out.jsonl")
        return [Generation(row["id"], row["text"], row.get("pred"), row["prompt_tokens"], dict(row["metrics"]), row)
                for row in rows]


def _record(question: str | dict, index: int) -> dict:
    if isinstance(question, str):
        if not question.strip():
            raise ThinkcError(f"question {index} is empty")
        return {"id": f"prompt-{index}", "question": question}
    if not isinstance(question, dict) or not isinstance(question.get("question"), str):
        raise ThinkcError(f"item {index}: give a string or a dict with a 'question' string")
    return {**question, "id": str(question.get("id", f"prompt-{index}"))}


def load(model: str | None = None, method: str = "lightthinker", **options) -> Model:
    """Load `model` (default: tiny-lightthinker for gist methods, tiny-sft otherwise) for `method`.
    options: gist_config, device, dtype, budget, window."""
    return Model(model, method, **options)
