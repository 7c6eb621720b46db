"""The CTS reference model R, trained on the exact inputs the native scorer reads.

The paper trains R on a small high-quality part of the data, held out from the target's training
set. R is then asked two things per thinking token (thinkc.cts.scorer): log p(x_i | answer, x_<i)
and log p(x_i | x_<i), from the rows

    conditional   = [BOS] "Answer: {answer}\\n\\nReasoning:\\n" + thinking
    unconditional = [BOS] "Reasoning:\\n" + thinking

A model trained only on chat-formatted problems has never seen the answer before the reasoning,
so it cannot use it: its two passes agree and the scores are noise (tiny-sft kept 67% of
computation tokens and 68% of filler at ratio 0.7). This recipe fine-tunes R on both rows of every
held-out record (loss on the thinking tokens only), so the conditional pass learns to read the
answer: the steps that the answer's chain of results determines become predictable given it,
while filler stays as unpredictable with the answer as without.

    thinkc data cts-reference tiny_cts_reference      # configs/train/tiny_cts_reference.yaml

Relative paths in a recipe (`init`, `data`) resolve next to the recipe first, then in the current
folder, as in `thinkc train` recipes (thinkc.train.paths); `output` is relative to the current folder.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from thinkc.errors import ThinkcError


@dataclass
class ReferenceRecipe:
    init: str  # model to start from: a local folder or a shipped checkpoint name
    output: str  # run folder; the model goes to <output>/final
    init_recipe: str | None = None  # the `thinkc train` recipe whose <output>/final is `init` (thinkc.train.chain)
    synth: dict = field(default_factory=dict)  # the held-out split: synth_records(n, seed, **options)
    exclude: dict = field(default_factory=dict)  # synth_records arguments of the target's training set
    data: str | None = None  # or records JSONL instead of synth
    max_steps: int = 200
    batch_size: int = 8
    lr: float = 1.0e-3
    warmup_steps: int = 10
    max_minutes: float = 10.0
    max_length: int = 1024
    seed: int = 0

    @classmethod
    def load(cls, path: str | Path) -> "ReferenceRecipe":
        """A recipe file, or the bare name of a shipped one (configs/train/<name>.yaml)."""
        import yaml

        from thinkc.train.paths import model_keywords, next_to
        from thinkc.train.shipped import shipped

        path = Path(path)
        if not path.is_file():
            found = shipped("train", str(path), ".yaml") if path.suffix == "" else None
            if found is None:
                raise ThinkcError(f"{path}: no such reference recipe (shipped: tiny_cts_reference)")
            path = found
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            raise ThinkcError(f"{path}: not valid YAML") from None
        if not isinstance(raw, dict):
            raise ThinkcError(f"{path}: expected a mapping of recipe keys")
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ThinkcError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
        folder = path.resolve().parent
        for key, keywords in (("init", model_keywords()), ("init_recipe", ()), ("data", ())):
            if key in raw:
                raw[key] = next_to(raw[key], folder, keywords)
        try:
            return cls(**raw)
        except TypeError as e:
            raise ThinkcError(f"{path}: {e}") from None


def held_out_records(recipe: ReferenceRecipe) -> list[dict]:
    """The reference's training records, with every question of the target's set removed."""
    from thinkc.data.schema import read_records
    from thinkc.data.synth import synth_records

    if recipe.data:
        recs = [r.to_dict() for r in read_records(recipe.data)]
    else:
        opts = dict(recipe.synth)
        recs = [r.to_dict() for r in synth_records(int(opts.pop("n")), int(opts.pop("seed")), id_prefix="ref", **opts)]
    if recipe.exclude:
        opts = dict(recipe.exclude)
        seen = {r.question for r in synth_records(int(opts.pop("n")), int(opts.pop("seed")), **opts)}
        recs = [r for r in recs if r["question"] not in seen]
    if not recs:
        raise ThinkcError("the reference recipe has no training records")
    return recs


def reference_rows(tokenizer, records: list[dict], max_length: int) -> list[tuple[list[int], int]]:
    """(ids, start) per row: both scorer rows of every record; loss on ids[start:] (the thinking)."""
    from thinkc.cts.scorer import prefix_ids, thinking_ids

    rows = []
    uncond = prefix_ids(tokenizer, None)
    for r in records:
        t = thinking_ids(tokenizer, r["thinking"])
        for p in (prefix_ids(tokenizer, r["answer"]), uncond):
            rows.append(((p + t)[:max_length], len(p)))
    return rows


def _batch(rows, pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, start) in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, start: len(row)] = ids[i, start: len(row)]
        mask[i, : len(row)] = 1
    return ids, labels, mask


def _lr(step: int, recipe: ReferenceRecipe) -> float:
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    frac = (step - recipe.warmup_steps) / max(1, recipe.max_steps - recipe.warmup_steps)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def train_reference(recipe: ReferenceRecipe, log=print) -> dict:
    """Fine-tune `recipe.init` on the scorer's two row formats; save to <output>/final. Stops at
    max_steps or max_minutes (whichever first) and says which."""
    import torch

    from thinkc.models.loading import load_model, load_tokenizer

    torch.manual_seed(recipe.seed)
    t0 = time.perf_counter()
    model, tok = load_model(recipe.init), load_tokenizer(recipe.init)
    rows = reference_rows(tok, held_out_records(recipe), recipe.max_length)
    rng = random.Random(recipe.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    out = Path(recipe.output)
    out.mkdir(parents=True, exist_ok=True)
    model.train()
    order, step, logf = [], 0, (out / "train_log.jsonl").open("w", encoding="utf-8")
    while step < recipe.max_steps and time.perf_counter() - t0 < 60 * recipe.max_minutes:
        if len(order) < recipe.batch_size:
            order += rng.sample(range(len(rows)), len(rows))
        batch, order = [rows[i] for i in order[: recipe.batch_size]], order[recipe.batch_size:]
        ids, labels, mask = _batch(batch, tok.pad_token_id or 0)
        for g in opt.param_groups:
            g["lr"] = _lr(step, recipe)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        step += 1
        if step % 10 == 0 or step == recipe.max_steps:
            entry = {"step": step, "loss": round(loss.item(), 4), "lr": _lr(step - 1, recipe),
                     "elapsed_s": round(time.perf_counter() - t0, 1)}
            logf.write(json.dumps(entry) + "\n")
            logf.flush()
            log(f"step {step}/{recipe.max_steps} loss {entry['loss']:.4f} {entry['elapsed_s']:.0f}s")
    logf.close()
    model.eval()
    model.save_pretrained(out / "final")
    tok.save_pretrained(out / "final")
    summary = {"steps": step, "rows": len(rows), "wall_s": round(time.perf_counter() - t0, 1),
               "stopped_by": "max_steps" if step >= recipe.max_steps else "max_minutes"}
    (out / "final" / "reference_recipe.json").write_text(json.dumps({**recipe.__dict__, **summary}, indent=1))
    return summary
