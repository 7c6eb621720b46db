"""The chance gap `thinkc data cts` reports beside the kept-share gap: the same selection (ratio,
forced tokens) with random scores seeded by record id, so what the forcing alone does is visible."""
import numpy as np
import pytest

from thinkc.cts.backends.random import random_scores
from thinkc.cts.pipeline import CtsJob, GapReport, run
from thinkc.cts.scorer import thinking_ids
from thinkc.cts.select import SelectOptions, select
from thinkc.data.schema import write_records
from thinkc.data.synth import synth_records
from thinkc.models.tiny import tiny_model


def _report(tokenizer, recs, ratio, options, scores) -> GapReport:
    rep = GapReport()
    for r in recs:
        ids = thinking_ids(tokenizer, r["thinking"])
        keep = select(tokenizer, r["thinking"], ids, scores(r, len(ids)), ratio, options).keep
        rep.add(tokenizer, r, ids, keep, ratio, options)
    return rep


@pytest.mark.parametrize("options", [SelectOptions(), SelectOptions(force_digits=True, force_operators=True)])
def test_chance_gap_is_the_gap_of_id_seeded_random_scores(tokenizer, options):
    recs = [r.to_dict() for r in synth_records(6, seed=2)]
    same = _report(tokenizer, recs, 0.7, options, lambda r, n: random_scores(r["id"], n)).shares()
    assert same["chance_gap"] == same["kept_share_gap"]  # the reference's keep was the chance selection itself
    other = _report(tokenizer, recs, 0.7, options, lambda r, n: np.arange(n, 0, -1, dtype=np.float32)).shares()
    assert other["chance_gap"] == same["chance_gap"] and other["kept_share_gap"] != other["chance_gap"]


def test_forcing_digits_alone_opens_a_chance_gap(tokenizer):
    recs = [r.to_dict() for r in synth_records(40, seed=5)]
    free = _report(tokenizer, recs, 0.7, SelectOptions(), lambda r, n: random_scores(r["id"], n)).chance.shares()
    forced = _report(tokenizer, recs, 0.7, SelectOptions(force_digits=True), lambda r, n: random_scores(r["id"], n))
    assert abs(free["kept_share_gap"]) < 0.05  # random keeps the same share of both kinds
    assert forced.shares()["chance_gap"] > 0.05  # computation thoughts hold most of the digits


def test_cts_run_reports_the_chance_gap_deterministically(tmp_path, tokenizer):
    write_records(tmp_path / "in.jsonl", synth_records(4, seed=0))
    model = tiny_model("qwen2", vocab_size=len(tokenizer))
    rows = [run(CtsJob(input=tmp_path / "in.jsonl", output=str(tmp_path / f"out{k}.jsonl"), ratios=[0.5, 0.7],
                       batch_size=4), model=model, tokenizer=tokenizer) for k in range(2)]
    assert [r["chance_gap"] for r in rows[0]] == [r["chance_gap"] for r in rows[1]]
    assert all(-1 < r["chance_gap"] < 1 for r in rows[0])


def test_no_gaps_when_thought_kinds_do_not_match_the_thinking(tokenizer):
    rec = synth_records(1, seed=0)[0].to_dict()
    rec["meta"]["thought_kinds"] = rec["meta"]["thought_kinds"][:-1]  # one kind short
    rep = _report(tokenizer, [rec], 0.7, SelectOptions(), lambda r, n: random_scores(r["id"], n))
    assert rep.shares() == {}


def test_random_backend_scores_are_the_chance_draw(tmp_path, tokenizer):
    """--backend random stores the same id-seeded draw the chance gap uses: its gap is its chance gap."""
    write_records(tmp_path / "in.jsonl", synth_records(5, seed=3))
    job = CtsJob(input=tmp_path / "in.jsonl", output=str(tmp_path / "out.jsonl"), ratios=[0.5, 0.7], backend="random")
    rows = run(job, tokenizer=tokenizer)
    assert all(r["kept_share_gap"] == r["chance_gap"] for r in rows)
    assert all(abs(r["achieved"] - r["ratio"]) < 0.05 for r in rows)
