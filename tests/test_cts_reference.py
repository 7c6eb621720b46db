"""The CTS reference recipe trains on exactly the scorer's rows; `thinkc data cts` keeps digits by
default and reports the computation-vs-filler kept shares on records that mark their thoughts."""
import json
import re

import pytest

from thinkc.cts.pipeline import CtsJob, output_path, run
from thinkc.cts.reference import ReferenceRecipe, held_out_records, reference_rows, train_reference
from thinkc.cts.scorer import prefix_ids, thinking_ids
from thinkc.data.schema import write_records
from thinkc.data.synth import synth_records
from thinkc.errors import ThinkcError
from thinkc.models.tiny import tiny_model


def test_reference_rows_are_the_scorer_rows(tokenizer):
    recs = [r.to_dict() for r in synth_records(3, seed=0)]
    rows = reference_rows(tokenizer, recs, max_length=10_000)
    assert len(rows) == 2 * len(recs)
    for k, r in enumerate(recs):
        t = thinking_ids(tokenizer, r["thinking"])
        for (ids, start), prefix in zip(rows[2 * k: 2 * k + 2], (prefix_ids(tokenizer, r["answer"]), prefix_ids(tokenizer, None))):
            assert ids == prefix + t and start == len(prefix)


def test_held_out_split_excludes_the_targets_problems():
    target = {r.question for r in synth_records(50, seed=0)}
    recipe = ReferenceRecipe(init="x", output="y", synth={"n": 50, "seed": 0}, exclude={"n": 20, "seed": 0})
    kept = held_out_records(recipe)
    assert len(kept) == 30 and not {r["question"] for r in kept} & {r.question for r in synth_records(20, seed=0)}
    assert {r["question"] for r in kept} <= target


def test_recipe_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("init: a\noutput: b\nlearning_rate: 1\n")
    with pytest.raises(ThinkcError, match="unknown key"):
        ReferenceRecipe.load(bad)


def test_train_reference_runs_and_saves(tmp_path, tokenizer):
    model_dir = tmp_path / "init"
    tiny_model("qwen2", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
               num_attention_heads=2, num_key_value_heads=1).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    recipe = ReferenceRecipe(init=str(model_dir), output=str(tmp_path / "ref"), synth={"n": 4, "seed": 1},
                             max_steps=3, batch_size=2, warmup_steps=1, max_length=256)
    summary = train_reference(recipe, log=lambda *_: None)
    assert summary["steps"] == 3 and summary["rows"] == 8 and summary["stopped_by"] == "max_steps"
    assert (tmp_path / "ref" / "final" / "model.safetensors").is_file()
    log = [json.loads(line) for line in (tmp_path / "ref" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3 and log[-1]["loss"] > 0


def test_cts_keeps_digits_by_default_and_reports_kind_shares(tmp_path, tokenizer):
    recs = synth_records(4, seed=0)
    write_records(tmp_path / "in.jsonl", recs)
    job = CtsJob(input=tmp_path / "in.jsonl", output=str(tmp_path / "out.jsonl"), ratios=[0.5, 0.7], batch_size=4)
    rows = run(job, model=tiny_model("qwen2", vocab_size=len(tokenizer)), tokenizer=tokenizer)
    for row in rows:
        assert 0 < row["compute_kept_share"] <= 1 and 0 <= row["filler_kept_share"] < 1
        assert row["kept_share_gap"] == pytest.approx(row["compute_kept_share"] - row["filler_kept_share"], abs=1e-3)
    out = [json.loads(line) for line in output_path(str(tmp_path / "out.jsonl"), 0.5).open()]
    for before, after in zip(recs, out):  # every digit of the thinking survives, in order
        assert re.sub(r"\D", "", after["thinking"]) == re.sub(r"\D", "", before.thinking)


def test_cli_defaults_are_the_seeds():
    import inspect

    from thinkc.cli.cts import cts

    params = inspect.signature(cts).parameters
    assert params["force_keep_digits"].default.default is True
    assert "--no-keep-digits" in params["force_keep_digits"].default.param_decls[0]
    assert params["ratio"].default.default == [0.5, 0.7]
