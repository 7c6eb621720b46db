"""A lighteval model class that decodes through thinkc's engine, so lighteval's Pipeline and
metrics evaluate any thinkc cache policy (vanilla, LightThinker, AnLLM, H2O, SepLLM,
StreamingLLM) with the exact prompts and decoding of `thinkc infer`.

It loads the model with `thinkc.infer.run.prepare` and decodes with `run_inference`, the two calls
`thinkc infer` makes, on the thinkc records the Docs carry (thinkc.eval.lighteval_tasks). Each
sample's row (text, prediction, peak KV, dependency, latency, compressions) stays in `self.rows`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from lighteval.models.abstract_model import LightevalModel, ModelConfig
from lighteval.models.model_output import ModelResponse
from lighteval.utils.cache_management import SampleCache

from thinkc.errors import ThinkcError


class ThinkcModelConfig(ModelConfig):
    """The `thinkc infer` options, as a lighteval model config."""
    model_name: str = "thinkc"
    method: str = "lightthinker"
    model: str | None = None  # local folder, 'smollm2' or a shipped tiny checkpoint
    gist_config: str | None = None
    batch_size: int = 8
    max_new_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    budget: int | None = None
    window: int | None = None
    compress_every: int | None = None
    device: str = "cpu"
    dtype: str | None = None


class ThinkcLightevalModel(LightevalModel):
    def __init__(self, config: ThinkcModelConfig):
        from thinkc.infer.run import prepare

        self.config = config
        self._cache = SampleCache(config)  # the Pipeline registers its tasks there
        self.model, self._tokenizer, self.policy, self.build, self.label = prepare(
            config.method, config.model, config.gist_config, config.budget, config.window, config.device,
            config.dtype)
        self.rows: dict[str, dict] = {}

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def add_special_tokens(self) -> bool:
        return False

    @property
    def max_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 32768))

    def settings(self):
        from thinkc.infer.run import InferSettings
        from thinkc.infer.sampling import SamplingConfig

        c = self.config
        extra = {"budget": c.budget, "window": c.window, "gist_config": c.gist_config}  # as `thinkc infer` records them
        return InferSettings(method=c.method, model_label=self.label, batch_size=c.batch_size,
                             max_new_tokens=c.max_new_tokens, sampling=SamplingConfig(c.temperature, c.top_p, c.seed),
                             compress_every=c.compress_every, extra={k: v for k, v in extra.items() if v is not None})

    def greedy_until(self, docs: list) -> list[ModelResponse]:
        """Decode the docs' records as `thinkc infer` would (same prompts, policy and sampling)."""
        from thinkc.infer.run import run_inference

        records = []
        for doc in docs:
            rec = (doc.specific or {}).get("record")
            if rec is None:
                raise ThinkcError(f"doc {doc.id!r} of {doc.task_name!r} carries no thinkc record: use the "
                                  "thinkc_* tasks (thinkc.eval.lighteval_tasks)")
            records.append(rec)
        with tempfile.TemporaryDirectory(prefix="thinkc-lighteval-") as tmp:
            rows = run_inference(self.model, self._tokenizer, records, self.policy, self.settings(), self.build,
                                 Path(tmp) / "run.jsonl")
        out = []
        for rec, row in zip(records, rows):
            self.rows[str(rec["id"])] = row
            out.append(ModelResponse(input=None, input_tokens=self.build(rec), text=[row["text"]]))
        return out

    def loglikelihood(self, docs: list) -> list[ModelResponse]:
        raise ThinkcError("thinkc's lighteval model generates only (the thinkc_* tasks are generative)")

    def loglikelihood_rolling(self, docs: list) -> list[ModelResponse]:
        raise ThinkcError("thinkc's lighteval model generates only (the thinkc_* tasks are generative)")
