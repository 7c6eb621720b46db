"""Selection: exact counts, order, ties by position, force-keep, UTF-8 safety, ratio 1.0 identity."""
import numpy as np
import pytest

from thinkc.cts.select import SelectOptions, keep_count, select, token_spans

TEXT = "Hmm, let me compute. 12 + 7 = 19.\n\nWait, so 19 - 5 = 14.\n\nThe answer is \\boxed{14}."
CJK = "日本語のテキスト 😀🎉 ok 12 + 3.\n\n中文 👍 done."


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def _is_subsequence(small, big):
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


@pytest.mark.parametrize("ratio", [0.1, 0.33, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_count_and_order(tokenizer, ratio, seed):
    ids = _ids(tokenizer, TEXT)
    scores = np.random.default_rng(seed).normal(size=len(ids)).astype(np.float32)
    sel = select(tokenizer, TEXT, ids, scores, ratio)
    assert sel.kept == sel.budget == keep_count(len(ids), ratio)
    kept_ids = [i for i, k in zip(ids, sel.keep) if k]
    assert sel.text == tokenizer.decode(kept_ids)
    # the kept tokens are the highest-scoring ones (all single-token units here)
    assert scores[sel.keep].min() >= scores[~sel.keep].max()


def test_keep_count_rounds_half_up():
    assert keep_count(5, 0.5) == 3 and keep_count(10, 0.7) == 7 and keep_count(3, 0.5) == 2
    assert keep_count(7, 1.0) == 7 and keep_count(7, 0.0) == 0
    with pytest.raises(ValueError):
        keep_count(3, 1.5)


def test_ties_broken_by_position(tokenizer):
    ids = _ids(tokenizer, TEXT)
    sel = select(tokenizer, TEXT, ids, np.zeros(len(ids)), 0.5)
    k = sel.budget
    assert sel.keep[:k].all() and not sel.keep[k:].any()


def test_ratio_one_is_byte_identity(tokenizer):
    for text in (TEXT, CJK):
        ids = _ids(tokenizer, text)
        sel = select(tokenizer, text, ids, np.random.default_rng(0).normal(size=len(ids)), 1.0)
        assert sel.text.encode() == text.encode() and sel.keep.all()


@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.5, 0.6, 0.8])
def test_utf8_safe_with_cjk_and_emoji(tokenizer, ratio):
    ids = _ids(tokenizer, CJK)
    spans = token_spans(tokenizer, CJK, ids)
    assert len(spans) > len(CJK.encode()) // 3  # the tiny tokenizer splits these characters into bytes
    for seed in range(5):
        scores = np.random.default_rng(seed).normal(size=len(ids))
        sel = select(tokenizer, CJK, ids, scores, ratio)
        assert sel.kept == sel.budget
        assert "\ufffd" not in sel.text
        assert _is_subsequence(list(sel.text), list(CJK))  # whole characters of the original, in order


def test_force_keep_digits_operators_format(tokenizer):
    ids = _ids(tokenizer, TEXT)
    scores = np.arange(len(ids), dtype=np.float32)  # later tokens score higher: digits early lose
    opts = SelectOptions(force_digits=True, force_operators=True, force_format=True)
    sel = select(tokenizer, TEXT, ids, scores, 0.6, opts)
    assert sel.kept == sel.budget and not sel.over_budget
    for ch in "12 7 19 5 14".split() + ["+", "=", "-", "\\boxed", "{", "}"]:
        assert ch in sel.text, ch
    # without forcing, the low-scoring early digits go
    plain = select(tokenizer, TEXT, ids, scores, 0.6)
    assert "12" not in plain.text


def test_forced_over_budget_keeps_forced_and_reports(tokenizer):
    ids = _ids(tokenizer, TEXT)
    sel = select(tokenizer, TEXT, ids, np.zeros(len(ids)), 0.05, SelectOptions(force_digits=True))
    assert sel.over_budget and sel.kept == sel.forced > sel.budget
    assert all(d in sel.text for d in "12 7 19 5 14".split())


def test_thought_structure_and_first_last(tokenizer):
    ids = _ids(tokenizer, TEXT)
    scores = -np.arange(len(ids), dtype=np.float32)  # earlier tokens score higher
    opts = SelectOptions(keep_thought_structure=True, keep_first=1, keep_last=2)
    sel = select(tokenizer, TEXT, ids, scores, 0.5, opts)
    assert sel.kept == sel.budget
    assert sel.text.count("\n\n") == TEXT.count("\n\n")
    thoughts_in, thoughts_out = TEXT.split("\n\n"), sel.text.split("\n\n")
    assert thoughts_out[-1].endswith("}.") and thoughts_out[1].startswith("W")
    assert len(thoughts_out) == len(thoughts_in)


def test_mismatched_ids_are_refused(tokenizer):
    ids = _ids(tokenizer, TEXT)
    with pytest.raises(ValueError, match="differ"):
        select(tokenizer, TEXT + " extra", ids, np.zeros(len(ids)), 0.5)
