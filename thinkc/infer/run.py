"""Batch inference over a dataset: prompts in the model's layout, the decode loop, one JSON line per
sample (the format thinkc.eval.metrics reads), resumable.

Each finished sample is appended to the output and flushed, so a killed run loses at most the
batch in flight; re-running with the same output skips the ids already there. At the end the file
is rewritten atomically in input order."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from thinkc.errors import ThinkcError
from thinkc.infer.policies import GIST_METHODS, CachePolicy
from thinkc.infer.outputs import (InferSettings, RunStats, check_resumable, output_row, prompt_hash,  # noqa: F401
                                   read_done)
from thinkc.infer.sampling import SamplingConfig  # noqa: F401
from thinkc.io import atomic_write

GIST_CONFIG_FILE = "gist_config.json"  # saved beside trained checkpoints (thinkc.train.trainer)


def load_inputs(path: str | os.PathLike | None = None, prompt: str | None = None) -> list[dict]:
    """Records {id, question, answer?} from a thinkc records / benchmark JSONL, or one --prompt."""
    if (path is None) == (prompt is None):
        raise ThinkcError("give exactly one of --input or --prompt")
    if prompt is not None:
        if not prompt.strip():
            raise ThinkcError("--prompt is empty")
        return [{"id": "prompt-0", "question": prompt}]
    from thinkc.eval.tasks import load_benchmark
    from thinkc.io import iter_jsonl

    try:
        return load_benchmark(path)
    except ThinkcError:
        rows = [r for _, r in iter_jsonl(path)]
        if rows and all(isinstance(r.get("question"), str) and r.get("id") not in (None, "") for r in rows):
            from thinkc.eval.answers import gold_from_reference

            return [{"id": str(r["id"]), "question": r["question"], "answer": gold_from_reference(r.get("answer"))}
                    for r in rows]
        raise


def eos_ids(tokenizer) -> list[int]:
    """The tokenizer's EOS plus the chat end-of-turn tokens it knows."""
    vocab = tokenizer.get_vocab()
    ids = {tokenizer.eos_token_id} | {vocab[t] for t in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>") if t in vocab}
    return sorted(i for i in ids if i is not None)


def _force(settings: InferSettings):
    if settings.compress_every and settings.method in GIST_METHODS:
        return int(settings.compress_every)
    return None


def run_inference(model, tokenizer, records: list[dict], policy: CachePolicy, settings: InferSettings,
                  build_prompt: Callable[[dict], list[int]], output: str | os.PathLike,
                  on_tokens: Callable[[int], None] | None = None,
                  on_sample: Callable[[dict], None] | None = None, stats: RunStats | None = None) -> list[dict]:
    """Decode every record not yet in `output` with continuous batching (`settings.batch_size`
    slots, a finished sample's slot refilled at once), append rows as they finish, then rewrite the
    file in input order. Returns the rows for `records` (finished earlier or now), in input order.
    Under torchrun (WORLD_SIZE > 1) each process decodes its shard (thinkc.infer.shard)."""
    from thinkc.infer.shard import world

    ids = [str(r["id"]) for r in records]
    if len(set(ids)) != len(ids):
        dup = next(i for k, i in enumerate(ids) if i in ids[:k])
        raise ThinkcError(f"input has duplicate id {dup!r}: give every record its own id")
    rank, size = world()
    if size > 1:
        from thinkc.infer.shard import run_sharded

        return run_sharded(_run_local, model, tokenizer, records, policy, settings, build_prompt, output, on_tokens,
                           on_sample, stats, rank, size)
    return _run_local(model, tokenizer, records, policy, settings, build_prompt, output, on_tokens, on_sample, stats)


def _run_local(model, tokenizer, records, policy, settings, build_prompt, output, on_tokens, on_sample, stats):
    import time

    from thinkc.infer.loop import decode

    ids = [str(r["id"]) for r in records]
    done = read_done(output)
    check_resumable(done, settings, output)
    for r in records:  # a row is reused only for the same prompt (the same id may hold another question)
        if str(r["id"]) in done:
            b = build_prompt(r)
            ids_ = b if isinstance(b, list) else b.input_ids.tolist()
            if done[str(r["id"])].get("prompt_hash") != prompt_hash(ids_):
                raise ThinkcError(f"{output} holds a row for id {r['id']} made from another prompt (another input "
                                  "file or prompt layout): choose another --output or delete it")
    todo = [(i, r) for i, r in enumerate(records) if str(r["id"]) not in done]
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n_tok = 0
    if todo:
        built = [build_prompt(r) for _, r in todo]  # token ids, or a GistSample with a compressed prompt
        prompts = [b if isinstance(b, list) else b.input_ids.tolist() for b in built]
        metas = [None if isinstance(b, list) else b.meta for b in built]
        warn_long_prompts(model, prompts, settings.max_new_tokens)
        by_index = {i: (r, p) for (i, r), p in zip(todo, prompts)}
        with open(output, "a", encoding="utf-8") as out:
            def finished(res):
                nonlocal n_tok
                rec, p = by_index[res.index]
                row = output_row(rec, settings, len(p), res, tokenizer, prompt_hash(p))
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
                done[row["id"]] = row
                n_tok += len(res.tokens)
                if on_sample:
                    on_sample(row)

            engines = []
            decode(model, prompts, policy, max_new_tokens=settings.max_new_tokens, eos_ids=eos_ids(tokenizer),
                   sampling=settings.sampling, force_compress=_force(settings), sample_indices=[i for i, _ in todo],
                   on_step=on_tokens, on_result=finished, batch_size=settings.batch_size,
                   prompt_meta=metas if any(m is not None for m in metas) else None,
                   kv_budget=settings.kv_budget, page_size=settings.page_size, compile=settings.compile,
                   attention=settings.attention,
                   engine_out=engines)
    if stats is not None:
        stats.samples, stats.wall_s, stats.generated_tokens = len(todo), time.perf_counter() - t0, n_tok
        stats.engine = engines[0].summary() if todo else {}
    ordered = [done[i] for i in ids]
    keep = set(ids)
    extra = [row for k, row in done.items() if k not in keep]  # rows of other inputs stay
    with atomic_write(output) as f:
        for row in ordered + extra:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return ordered


def warn_long_prompts(model, prompts: list[list[int]], max_new_tokens: int) -> int:
    """One warning line when prompts plus the generation limit pass the positions the model was
    trained for (max_position_embeddings); returns how many do."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    over = [len(p) for p in prompts if limit and len(p) + max_new_tokens > limit]
    if over:
        from thinkc.console import print_warning

        print_warning(f"{len(over)} of {len(prompts)} prompt(s) plus --max-new-tokens {max_new_tokens} pass the "
                      f"model's {limit:,} positions (longest prompt {max(over):,} tokens): it was never trained "
                      "past them, so text generated there is unreliable")
    return len(over)


def summarize(rows: Iterable[dict]) -> dict:
    """Accuracy (rows with a gold answer), mean peak KV, mean dependency, mean generated tokens."""
    rows = list(rows)
    out = {"samples": len(rows)}
    graded = [r for r in rows if r.get("gold") is not None]
    if graded:
        from thinkc.eval.answers import is_correct

        out["accuracy"] = sum(is_correct(r.get("pred"), r["gold"]) for r in graded) / len(graded)
    for key in ("peak_kv", "dependency", "generated_tokens", "compressions"):
        vals = [r["metrics"][key] for r in rows]
        out[f"mean_{key}"] = sum(vals) / len(vals) if vals else 0.0
    wall = sum(r["metrics"]["wall_s"] for r in rows)  # per-sample latencies (they overlap in a batch)
    out["mean_wall_s"] = wall / len(rows) if rows else 0.0
    return out


def default_model_for(method: str) -> str:
    return "tiny-lightthinker" if method in GIST_METHODS else "tiny-sft"


def resolve_gist_config(model_path: Path | None, gist_config: str | None):
    """--gist-config, else the config saved beside the model, else None."""
    from thinkc.gist.config import GistConfig

    if gist_config:
        return GistConfig.load(gist_config)
    if model_path is not None and (model_path / GIST_CONFIG_FILE).is_file():
        return GistConfig.load(model_path / GIST_CONFIG_FILE)
    return None


def prepare(method: str, model_name: str | None = None, gist_config: str | None = None,
            budget: int | None = None, window: int | None = None, device: str = "cpu", dtype=None):
    """(model, tokenizer, policy, build_prompt, model_label) for a method, all local."""
    from thinkc.gist.config import GistConfig
    from thinkc.gist.layout import build_prompt
    from thinkc.infer.policies import GistSpec, make_policy
    from thinkc.models.loading import load_model, load_tokenizer, resolve_model

    name = model_name or default_model_for(method)
    path = resolve_model(name)
    model = load_model(name, dtype=dtype, device=device)
    tokenizer = load_tokenizer(name)
    cfg = resolve_gist_config(path, gist_config)
    spec = None
    if method in GIST_METHODS:
        if cfg is None:
            raise ThinkcError(f"{name} has no {GIST_CONFIG_FILE}: pass --gist-config (a preset such as "
                              "qwen, llama, anllm, token_level, tiny, or a file)")
        if not cfg.compresses:
            raise ThinkcError(f"gist config mode {cfg.mode!r} compresses nothing; {method} needs a gist layout")
        anllm_shaped = cfg.n_cache == 1 and not cfg.use_output_token and cfg.see_current
        if method == "anllm" and not anllm_shaped:
            raise ThinkcError(f"--method anllm needs an AnLLM layout (1 anchor, no [o], see_current), but the gist "
                              f"config has n_cache={cfg.n_cache}, use_output_token={cfg.use_output_token}: use "
                              "--method lightthinker for this model, or --gist-config anllm")
        from thinkc.gist.tokens import add_gist_tokens

        before = len(tokenizer)
        add_gist_tokens(tokenizer, model, cfg)  # no-op for a trained gist model; mechanics only otherwise
        if len(tokenizer) > before:
            from thinkc.console import print_warning

            print_warning(f"{name} was never trained with these gist tokens ({len(tokenizer) - before} added now, "
                          f"untrained): {method} runs the mechanics, its answers are not meaningful")
        spec = GistSpec.from_config(cfg, tokenizer)
    layout = cfg if (cfg is not None and method in GIST_METHODS) else GistConfig(mode="normal")
    policy = make_policy(method, spec=spec, tokenizer=tokenizer, budget=budget, window=window)
    if layout.compresses_prompt:  # aug / recover: the prompt's sentence blocks and metadata go to the engine
        from thinkc.gist.layout import build_prompt_sample

        return model, tokenizer, policy, (lambda rec: build_prompt_sample(rec, tokenizer, layout)), str(name)
    return model, tokenizer, policy, (lambda rec: build_prompt(rec, tokenizer, layout)), str(name)
