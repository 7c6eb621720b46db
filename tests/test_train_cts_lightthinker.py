"""CTS + LightThinker (issue 10 item 7): the tiny_cts_lightthinker recipe trains gist compression on
CTS-compressed traces. At CI size: CTS (native scorer, a tiny random reference) compresses a few
synthetic traces keeping the blank lines, the gist layout puts one block on every compressed thought,
and the recipe trains a few steps on them."""
import json

from thinkc.cts.pipeline import CtsJob, output_path, run
from thinkc.cts.select import SelectOptions
from thinkc.data.schema import write_records
from thinkc.data.segment import split_thoughts
from thinkc.data.synth import synth_records
from thinkc.gist.config import GistConfig
from thinkc.gist.layout import build_sample
from thinkc.gist.rule import Role
from thinkc.gist.tokens import add_gist_tokens
from thinkc.models.tiny import tiny_model
from thinkc.train.callbacks import read_log
from thinkc.train.config import load_config
from thinkc.train.trainer import run_training

SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2}


def test_recipe_trains_gist_blocks_on_cts_compressed_thoughts(tmp_path, tokenizer):
    recipe = load_config("tiny_cts_lightthinker", check_files=False)
    assert recipe.method == "lightthinker" and recipe.data.train.endswith(".r0.7.jsonl")
    records = synth_records(12, seed=0, min_steps=1, max_steps=2, max_value=9, filler=0.2)
    write_records(tmp_path / "train.jsonl", records)
    job = CtsJob(input=tmp_path / "train.jsonl", output=str(tmp_path / "train.jsonl"), ratios=[0.7],
                 batch_size=4, chunk_size=6, options=SelectOptions(force_digits=True, keep_thought_structure=True))
    run(job, model=tiny_model("qwen2", vocab_size=len(tokenizer)), tokenizer=tokenizer)
    out = output_path(str(tmp_path / "train.jsonl"), 0.7)
    compressed = [json.loads(line) for line in out.open(encoding="utf-8")]

    gcfg = GistConfig.load(recipe.gist_config_name)
    add_gist_tokens(tokenizer, None, gcfg)
    output_id = tokenizer.convert_tokens_to_ids(gcfg.output_token)
    for before, after in zip(records, compressed):
        thoughts = split_thoughts(after["thinking"])
        assert len(thoughts) == len(split_thoughts(before.thinking))  # the blank lines survived CTS
        assert after["meta"]["cts"]["tokens_after"] < after["meta"]["cts"]["tokens_before"]
        s = build_sample(after, tokenizer, gcfg)
        assert s.input_ids.tolist().count(output_id) == len(thoughts)  # one gist block per compressed thought
        for i, t in enumerate(thoughts):
            body = s.input_ids[(s.meta.seg == i) & (s.meta.role == Role.THOUGHT)]
            assert tokenizer.decode(body) == t

    cfg = load_config("tiny_cts_lightthinker", overrides={
        "model": {"init": "tiny", "arch": "qwen2", "vocab_size": len(tokenizer), **SMALL},  # CI: no local base run
        "data": {"train": str(out), "max_length": 384},
        "train": {"output": str(tmp_path / "run"), "max_steps": 3, "batch_size": 4, "logging_steps": 1,
                  "save_steps": 100, "max_minutes": 2.0}})
    result = run_training(cfg)
    losses = [row["loss"] for row in read_log(tmp_path / "run" / "train_log.jsonl") if "loss" in row]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    saved = json.loads((result.final_dir / "gist_config.json").read_text())
    assert saved["mode"] == "aug-wo-pc" and saved["n_cache"] == gcfg.n_cache
