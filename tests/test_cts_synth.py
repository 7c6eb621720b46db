"""On the synthetic task with SmolLM2-135M as the reference, CTS keeps computation thoughts and
drops filler: the kept share of computation-thought tokens exceeds that of filler-thought tokens."""
import numpy as np
import pytest
import torch

from thinkc.cts.scorer import score_records
from thinkc.cts.select import BOUNDARY, select, token_spans


def kept_shares(tok, rec, ids, keep):
    """(kept share of compute tokens, kept share of filler tokens, n compute, n filler) of one record."""
    kinds = rec["meta"]["thought_kinds"]
    starts = [0] + [m.end() for m in BOUNDARY.finditer(rec["thinking"])]
    kept = {"compute": [0, 0], "filler": [0, 0]}
    for (s, _e), k in zip(token_spans(tok, rec["thinking"], ids), keep):
        t = int(np.searchsorted(starts, s, side="right")) - 1
        if rec["thinking"][s:s + 1] == "\n":
            continue  # boundary token: in no thought
        kept[kinds[t]][0] += int(k)
        kept[kinds[t]][1] += 1
    return kept


def cts_filler_report(model, tok, records, ratios=(0.5, 0.6, 0.7), conditional=True, batch_size=8):
    scored = score_records(model, tok, records, conditional=conditional, batch_size=batch_size)
    rows = []
    for r in ratios:
        tot = {"compute": [0, 0], "filler": [0, 0]}
        for rec, s in zip(records, scored):
            sel = select(tok, rec["thinking"], s.ids, s.scores, r)
            for kind, (k, n) in kept_shares(tok, rec, s.ids, sel.keep).items():
                tot[kind][0] += k
                tot[kind][1] += n
        kept_total = tot["compute"][0] + tot["filler"][0]
        rows.append({"ratio": r, "compute_kept_share": tot["compute"][0] / tot["compute"][1],
                     "filler_kept_share": tot["filler"][0] / tot["filler"][1],
                     "kept_in_compute": tot["compute"][0] / kept_total,
                     "compute_token_share": tot["compute"][1] / (tot["compute"][1] + tot["filler"][1])})
    return rows


@pytest.mark.smollm2
@pytest.mark.slow
def test_cts_drops_mostly_filler_with_smollm2(smollm2_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thinkc.data.synth import synth_records

    tok = AutoTokenizer.from_pretrained(smollm2_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, local_files_only=True, dtype=torch.float32).eval()
    records = [r.to_dict() for r in synth_records(6, seed=3, min_steps=3, max_steps=4)]
    for row in cts_filler_report(model, tok, records, ratios=(0.5, 0.7)):
        assert row["compute_kept_share"] > row["filler_kept_share"], row
