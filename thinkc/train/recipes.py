"""The shipped tiny checkpoints: train a recipe, copy its final model into thinkc/assets/checkpoints,
and measure greedy accuracy on the synthetic test split (a note; `thinkc eval` measures properly).

    python -m thinkc.train.recipes RECIPE NAME [EARLIER_RECIPE ...]

    python -m thinkc.train.recipes tiny_sft_2 tiny-sft tiny_sft      # after `thinkc train tiny_sft_2`
    python -m thinkc.train.recipes tiny_lightthinker_2 tiny-lightthinker tiny_lightthinker
    python -m thinkc.train.recipes tiny_cts_6 tiny-cts tiny_cts tiny_cts_2 tiny_cts_3 tiny_cts_4 tiny_cts_5
    python -m thinkc.train.recipes tiny_cts_lightthinker_3 tiny-cts-lightthinker tiny_cts_lightthinker \
        tiny_cts_lightthinker_2
    python -m thinkc.train.recipes tiny_cts_reference tiny-cts-reference   # after `thinkc data cts-reference`

A checkpoint trained in several parts (each recipe continuing the last one's final/) ships one
train_log.jsonl: the earlier recipes' logs in order, then its own, every row tagged with its recipe.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

from thinkc.train.config import load_config

CHECKPOINTS = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"
# what inference needs; training_args.bin and optimizer state stay in the run folder
SHIPPED_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                 "gist_config.json", "train_config.yaml", "train_log.jsonl", "reference_recipe.json")
REFERENCE_RECIPES = ("tiny_cts_reference",)  # thinkc.cts.reference recipes (not `thinkc train` configs)


def _output(recipe: str) -> Path:
    if recipe in REFERENCE_RECIPES:
        from thinkc.cts.reference import ReferenceRecipe

        return Path(ReferenceRecipe.load(recipe).output)  # the shipped recipe of that name
    return Path(load_config(recipe, check_files=False).train.output)


def ship(recipe: str, name: str, earlier: Sequence[str] = ()) -> Path:
    """Copy <output>/final of `recipe` to thinkc/assets/checkpoints/<name>, with the train logs of
    `earlier` (the parts it continues, in order) and its own as one train_log.jsonl."""
    final = _output(recipe) / "final"
    logs = _part_logs([*earlier, recipe])  # checked before anything is written
    dest = CHECKPOINTS / name
    tmp = CHECKPOINTS / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in SHIPPED_FILES:
        if f != "train_log.jsonl" and (final / f).is_file():
            shutil.copy2(final / f, tmp / f)
    if logs:
        _write_log(tmp / "train_log.jsonl", logs)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _part_logs(recipes: Sequence[str]) -> list[tuple[str, Path]]:
    """(recipe, its run folder's train_log.jsonl) per part; [] for a single run without a log."""
    logs = [(r, _output(r) / "train_log.jsonl") for r in recipes]
    missing = [str(f) for _, f in logs if not f.is_file()]
    if len(missing) == len(logs) == 1:
        return []
    if missing:
        raise FileNotFoundError(f"no train log for a part of this checkpoint: {', '.join(missing)}")
    return logs


def _write_log(path: Path, logs: list[tuple[str, Path]]) -> None:
    """The parts' logs one after another, each row tagged with its recipe."""
    with path.open("w", encoding="utf-8") as out:
        for recipe, f in logs:
            for line in f.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    out.write(json.dumps({"recipe": recipe, **json.loads(line)}) + "\n")


def synthetic_accuracy(recipe: str, model: str, n_test: int = 50, max_new_tokens: int = 768,
                       batch_size: int = 50) -> dict:
    """Greedy decoding (thinkc.infer's loop: vanilla for sft, gist compression for lightthinker) on a
    synthetic test split disjoint from the recipe's training problems; exact integer match."""
    import tempfile

    from thinkc.data.synth import synth_splits
    from thinkc.infer.run import InferSettings, prepare, run_inference

    cfg = load_config(recipe, check_files=False)
    opts = dict(cfg.data.synth)
    n_train, seed = int(opts.pop("n", 2000)), int(opts.pop("seed", cfg.train.seed))
    _, test = synth_splits(n_train, n_test, seed, **opts)
    method = cfg.method if cfg.uses_gist else "vanilla"
    mdl, tok, policy, build_prompt, label = prepare(method, model)
    records = [{"id": r.id, "question": r.question, "answer": str(r.meta["result"])} for r in test]
    with tempfile.TemporaryDirectory() as d:
        rows = run_inference(mdl, tok, records, policy, InferSettings(method, label, batch_size, max_new_tokens),
                             build_prompt, Path(d) / "out.jsonl")
    correct = sum(1 for row in rows if (row.get("pred") or "").strip() == row["gold"])
    trig = getattr(getattr(policy, "spec", None), "trigger_id", None)
    return {"model": model, "method": method, "n": len(rows), "accuracy": correct / len(rows),
            "mean_new_tokens": sum(len(tok(row["text"])["input_ids"]) for row in rows) / len(rows),
            "compressions": sum(row["metrics"].get("compressions", 0) for row in rows) / len(rows),
            "trigger_id": trig}


if __name__ == "__main__":
    recipe, name, earlier = sys.argv[1], sys.argv[2], sys.argv[3:]
    print("shipped to", ship(recipe, name, earlier))
    if recipe not in REFERENCE_RECIPES:
        print(json.dumps(synthetic_accuracy(recipe, name)))
