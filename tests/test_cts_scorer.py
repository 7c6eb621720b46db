"""Native CTS scores vs a direct slow computation (two full forwards per record, model logits,
log_softmax + gather), and batched / windowed scoring vs unbatched."""
import numpy as np
import pytest
import torch

from thinkc.cts.scorer import UNCOND_TEXT, prefix_ids, score_records, thinking_ids
from thinkc.models.tiny import tiny_model

THOUGHTS = ["Let me compute. 12 + 7 = 19.", "Hmm, let me double-check that. Wait, 19 - 5 = 14.",
            "Okay, so we know that the total is the sum of the parts.", "日本 😀 6 * 8 = 48."]


def _records(n=5):
    return [{"thinking": "\n\n".join(THOUGHTS[: 1 + i % 4] * (1 + i % 3)), "answer": f"The answer is \\boxed{{{i + 10}}}."}
            for i in range(n)]


def slow_scores(model, tok, rec, conditional=True):
    """Unbatched reference: full forward of [prefix + thinking], logit at p+j-1 predicts token j."""
    t = thinking_ids(tok, rec["thinking"])

    def logp(prefix):
        x = torch.tensor([prefix + t])
        lp = torch.log_softmax(model(x).logits[0].float(), dim=-1)
        return np.array([lp[len(prefix) + j - 1, t[j]].item() for j in range(len(t))])

    un = logp(prefix_ids(tok, None))
    return logp(prefix_ids(tok, rec["answer"])) - un if conditional else -un


@pytest.mark.parametrize("batch_size,window", [(1, None), (8, None), (3, 7), (8, 32)])
def test_native_matches_slow_on_tiny(tokenizer, arch, batch_size, window):
    model = tiny_model(arch, vocab_size=len(tokenizer))
    recs = _records()
    got = score_records(model, tokenizer, recs, batch_size=batch_size, window=window)
    for rec, s in zip(recs, got):
        assert s.ids.tolist() == thinking_ids(tokenizer, rec["thinking"])
        assert s.scores.dtype == np.float32 and len(s.scores) == len(s.ids)
        np.testing.assert_allclose(s.scores, slow_scores(model, tokenizer, rec), atol=1e-4)


def test_batched_and_windowed_equal_unbatched(tokenizer):
    model = tiny_model("qwen2", vocab_size=len(tokenizer))
    recs = _records(6)
    one = score_records(model, tokenizer, recs, batch_size=1, window=None)
    for bs, w in [(6, None), (4, 5), (12, 64)]:
        other = score_records(model, tokenizer, recs, batch_size=bs, window=w)
        for a, b in zip(one, other):
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_unconditional_is_surprisal(tokenizer):
    model = tiny_model("llama", vocab_size=len(tokenizer))
    recs = _records(3)
    got = score_records(model, tokenizer, recs, conditional=False, batch_size=2, window=9)
    for rec, s in zip(recs, got):
        np.testing.assert_allclose(s.scores, slow_scores(model, tokenizer, rec, conditional=False), atol=1e-4)
        assert (s.scores > 0).all()  # -log p of a random model's prediction is positive


def test_prefixes_differ_only_by_answer(tokenizer):
    un, co = prefix_ids(tokenizer, None), prefix_ids(tokenizer, "42")
    assert co[-len(un):] == un and len(co) > len(un)
    assert tokenizer.decode(un) == UNCOND_TEXT


def test_empty_thinking_gives_empty_scores(tokenizer):
    model = tiny_model("qwen2", vocab_size=len(tokenizer))
    got = score_records(model, tokenizer, [{"thinking": "", "answer": "1"}, {"thinking": "2 + 2", "answer": "4"}])
    assert len(got[0].ids) == 0 and len(got[1].scores) == len(got[1].ids) > 0


@pytest.mark.smollm2
def test_native_matches_slow_on_smollm2(smollm2_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, local_files_only=True, dtype=torch.float32).eval()
    recs = [{"thinking": "Let me compute. 12 + 7 = 19.\n\nHmm, wait. 19 - 5 = 14.", "answer": "\\boxed{14}"},
            {"thinking": "6 * 8 = 48, so 48 / 4 = 12.", "answer": "The answer is \\boxed{12}."}]
    got = score_records(model, tok, recs, batch_size=4, window=8)
    for rec, s in zip(recs, got):
        np.testing.assert_allclose(s.scores, slow_scores(model, tok, rec), atol=1e-4)
