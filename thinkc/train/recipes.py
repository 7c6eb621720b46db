"""The shipped tiny checkpoints: train a recipe, copy its final model into thinkc/assets/checkpoints,
and measure greedy accuracy on the synthetic test split (a note; `thinkc eval` measures properly).

    python -m thinkc.train.recipes tiny_sft tiny-sft                 # after `thinkc train tiny_sft`
    python -m thinkc.train.recipes tiny_lightthinker tiny-lightthinker
    python -m thinkc.train.recipes tiny_cts tiny-cts
    python -m thinkc.train.recipes tiny_cts_lightthinker tiny-cts-lightthinker
    python -m thinkc.train.recipes tiny_cts_reference tiny-cts-reference   # after `thinkc data cts-reference`
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

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

        return Path(ReferenceRecipe.load(Path("configs/train") / f"{recipe}.yaml").output)
    return Path(load_config(recipe, check_files=False).train.output)


def ship(recipe: str, name: str) -> Path:
    """Copy <output>/final (+ its train log) of `recipe` to thinkc/assets/checkpoints/<name>."""
    out = _output(recipe)
    final = out / "final"
    dest = CHECKPOINTS / name
    tmp = CHECKPOINTS / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in SHIPPED_FILES:
        src = out / f if f == "train_log.jsonl" else final / f
        if src.is_file():
            shutil.copy2(src, tmp / f)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


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
    recipe, name = sys.argv[1], sys.argv[2]
    print("shipped to", ship(recipe, name))
    if recipe not in REFERENCE_RECIPES:
        print(json.dumps(synthetic_accuracy(recipe, name)))
