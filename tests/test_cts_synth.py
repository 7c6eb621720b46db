"""The filler-vs-computation measurement used to report CTS on the synthetic task
(thinkc.bench.cts.run_filler_bench). With SmolLM2-135M as the reference over 40 records CTS keeps
more computation than filler (reported numbers), but on a handful of records the margin is not
robust, so the SmolLM2 run is a report, not a test; here the measurement itself is checked."""
import numpy as np
import pytest

from thinkc.bench.cts import kept_by_kind, run_filler_bench, token_kinds
from thinkc.cts.select import keep_count, select
from thinkc.data.synth import synth_records
from thinkc.models.tiny import tiny_model


def _records(n=3):
    return [r.to_dict() for r in synth_records(n, seed=0, min_steps=3, max_steps=3, filler=0.4)]


def _oracle_scores(tok, rec, ids):
    """1 for tokens of computation thoughts, 0 otherwise (what an ideal reference would give)."""
    everything = kept_by_kind(tok, rec, ids, np.ones(len(ids), dtype=bool))
    assert everything["filler"][1] > 0 and everything["compute"][1] > 0
    kinds = token_kinds(tok, rec, ids)
    return np.array([k == "compute" for k in kinds], dtype=np.float32), everything


def test_kept_by_kind_with_oracle_scores(tokenizer):
    for rec in _records():
        ids = tokenizer(rec["thinking"], add_special_tokens=False)["input_ids"]
        scores, everything = _oracle_scores(tokenizer, rec, ids)
        n_compute, n_filler = everything["compute"][1], everything["filler"][1]
        ratio = n_compute / len(ids)
        sel = select(tokenizer, rec["thinking"], ids, scores, ratio)
        got = kept_by_kind(tokenizer, rec, ids, sel.keep)
        assert sel.kept == keep_count(len(ids), ratio)
        # the budget is filled with computation tokens first; whatever is left is boundary or filler
        assert got["compute"][0] == min(n_compute, sel.kept)
        assert got["filler"][0] <= max(0, sel.kept - n_compute)


def test_filler_bench_rows(tokenizer):
    model = tiny_model("qwen2", vocab_size=len(tokenizer))
    rows = run_filler_bench(model, tokenizer, _records(2), ratios=(0.5, 1.0), batch_size=4)
    assert [r["ratio"] for r in rows] == [0.5, 1.0]
    assert rows[1]["compute_kept_share"] == rows[1]["filler_kept_share"] == 1.0
    assert 0 < rows[0]["compute_kept_share"] < 1 and 0 < rows[0]["filler_kept_share"] < 1
    assert 0 < rows[0]["compute_token_share"] < 1


def test_thought_kinds_mismatch_is_reported(tokenizer):
    rec = _records(1)[0]
    rec["meta"]["thought_kinds"] = rec["meta"]["thought_kinds"][:-1]
    ids = tokenizer(rec["thinking"], add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="thought_kinds"):
        kept_by_kind(tokenizer, rec, ids, np.ones(len(ids), dtype=bool))
