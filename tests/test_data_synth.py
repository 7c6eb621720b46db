"""Synthetic arithmetic task: determinism, correct answers (recomputed from meta), R1-like
structure (both thought styles), column work that adds up, thought kinds that match the text,
disjoint splits."""
import re

import pytest

from thinkc.data.segment import split_thoughts
from thinkc.data.synth import synth_records, synth_splits


def _recompute(meta):
    cur = meta["start"]
    for op, b in meta["ops"]:
        cur = cur + b if op == "+" else cur - b if op == "-" else cur * b
    return cur


def test_same_seed_same_records_other_seed_differs():
    a, b = synth_records(50, seed=7), synth_records(50, seed=7)
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b]
    assert [r.question for r in synth_records(50, seed=8)] != [r.question for r in a]
    # a prefix of a bigger set is the smaller set (records do not depend on n)
    assert [r.question for r in synth_records(10, seed=7)] == [r.question for r in a[:10]]


STEP = {"short": re.compile(r"(\d+) ([-+*]) (\d+) = (\d+)\."),
        "r1": re.compile(r"^So (\d+) ([-+*]) (\d+) = (\d+)\.$", re.M)}


@pytest.mark.parametrize("kw", [{}, dict(min_steps=2, max_steps=4, max_value=20, filler=0.0),
                                dict(min_steps=1, max_steps=8, max_value=9, filler=0.8),
                                dict(style="short"), dict(style="short", min_steps=1, max_steps=8, max_value=9),
                                dict(min_steps=3, max_steps=6, max_value=999)])
def test_answers_are_correct_and_structure_matches_meta(kw):
    recs = synth_records(300, seed=1, **kw)
    style = kw.get("style", "r1")
    assert len({r.id for r in recs}) == len(recs)
    for r in recs:
        m = r.meta
        assert m["style"] == style
        assert _recompute(m) == m["result"] >= 0
        assert r.answer.endswith(f"\\boxed{{{m['result']}}}.")
        assert kw.get("min_steps", 3) <= m["steps"] == len(m["ops"]) <= kw.get("max_steps", 4)
        thoughts = split_thoughts(r.thinking)
        assert r.thinking == "\n\n".join(thoughts)  # blank line between thoughts, nothing else
        assert len(thoughts) == len(m["thought_kinds"])
        compute = [t for t, k in zip(thoughts, m["thought_kinds"]) if k == "compute"]
        # one computation per step thought, in order, each correct; then the conclusion
        equations = [STEP[style].search(t) for t in compute[:-1]]
        assert len(equations) == m["steps"] and all(equations)
        cur = m["start"]
        for eq, (op, b) in zip(equations, m["ops"]):
            a, o, bb, c = eq.groups()
            assert (int(a), o, int(bb)) == (cur, op, b)
            cur = int(c)
            assert cur == _recompute({"start": int(a), "ops": [[o, int(bb)]]})
        assert compute[-1].startswith("So " if style == "short" else "All ") and str(m["result"]) in compute[-1]
        assert str(m["start"]) in r.question


COLUMN = re.compile(r"^(Ones|Tens|Hundreds|Thousands|Ten thousands): (.*)$", re.M)


def _column_result(op: str, lines: list[str]) -> int:
    """The number the column lines write down (ones first), each line's own arithmetic checked."""
    digits = []
    for line in lines:
        if line.startswith("carry"):  # the final carry: "carry 1, write 1."
            digits.append(int(re.fullmatch(r"carry (\d), write \1\.", line).group(1)))
            continue
        lhs, rhs = line.split(" = ")
        if op == "-":
            lhs = lhs.split("borrow 10: ")[-1]
            value = int(rhs.rstrip("."))
            assert 0 <= value <= 9
        else:
            value = int(rhs.split(",")[0])
            assert int(re.search(r"write (\d)", rhs).group(1)) == value % 10
            carry = re.search(r"carry (\d)", rhs)
            assert (int(carry.group(1)) if carry else 0) == value // 10
        assert eval(lhs) == value  # noqa: S307 - digits and + - * only, from our own generator
        digits.append(value % 10)
    return int("".join(map(str, reversed(digits))))


def test_r1_column_work_adds_up_and_thoughts_are_long():
    from thinkc.models.tokenizer import tiny_tokenizer

    tok = tiny_tokenizer(512)
    lengths = []
    for r in synth_records(200, seed=3, min_steps=3, max_steps=6, max_value=999):
        compute = [t for t, k in zip(split_thoughts(r.thinking), r.meta["thought_kinds"]) if k == "compute"]
        for t, (op, b) in zip(compute, r.meta["ops"]):
            a, o, bb, c = STEP["r1"].search(t).groups()
            assert _column_result(o, [m.group(2) for m in COLUMN.finditer(t)]) == int(c)
            assert f"I need {a} {o} {bb}." in t  # the known amount is restated before the work
            lengths.append(len(tok(t)["input_ids"]))
    assert 40 <= min(lengths) and max(lengths) <= 200


@pytest.mark.parametrize("style", ["r1", "short"])
def test_thought_kinds_match_the_text(style):
    """A computation thought holds a new step (or the conclusion); a filler thought computes
    nothing new: no step statement, no column work, nothing the conclusion says."""
    n_filler = 0
    for r in synth_records(200, seed=5, filler=0.5, style=style):
        kinds = r.meta["thought_kinds"]
        assert kinds[-1] == "compute"
        n_filler += kinds.count("filler")
        for t, k in zip(split_thoughts(r.thinking), kinds):
            assert (bool(STEP[style].search(t)) or t.endswith(" now.")) == (k == "compute"), (k, t)
            if k == "filler":
                assert not COLUMN.search(t) and "Step" not in t
    assert n_filler > 200


def test_filler_share_follows_the_knob():
    def share(f):
        kinds = [k for r in synth_records(400, seed=2, filler=f) for k in r.meta["thought_kinds"]]
        return kinds.count("filler") / len(kinds)

    assert share(0.0) == 0.0
    assert abs(share(0.4) - 0.4) < 0.05
    assert abs(share(0.7) - 0.7) < 0.05
    text = " ".join(r.thinking for r in synth_records(200, seed=2, filler=0.5))
    assert "Wait," in text and "Hmm," in text and "double-check" in text


def test_splits_are_disjoint_and_deterministic():
    train, test = synth_splits(500, 100, seed=4)
    assert len(train) == 500 and len(test) == 100
    assert not {r.question for r in train} & {r.question for r in test}
    assert not {r.id for r in train} & {r.id for r in test}
    assert [r.to_dict() for r in synth_splits(500, 100, seed=4)[1]] == [r.to_dict() for r in test]


def test_splits_fail_clearly_when_problems_run_out():
    with pytest.raises(ValueError, match="test problems not in train"):
        synth_splits(3000, 500, seed=0, min_steps=1, max_steps=1, max_value=2)


@pytest.mark.parametrize("kw", [dict(n=-1), dict(n=1, min_steps=0), dict(n=1, min_steps=5, max_steps=3),
                                dict(n=1, filler=1.0), dict(n=1, max_value=1), dict(n=1, max_factor=1),
                                dict(n=1, max_factor=10), dict(n=1, drill=-0.5)])
def test_bad_arguments_raise(kw):
    with pytest.raises(ValueError):
        synth_records(**kw)


def test_max_factor_bounds_multiplication():
    for mf in (2, 3, 9):
        factors = {b for r in synth_records(400, seed=5, max_factor=mf) for op, b in r.meta["ops"] if op == "*"}
        assert factors and max(factors) <= mf and min(factors) >= 2
    assert max(b for r in synth_records(400, seed=5, max_factor=9) for op, b in r.meta["ops"] if op == "*") > 3


def test_drill_records_interleave_without_changing_the_problems():
    plain = synth_records(40, seed=2)
    mixed = synth_records(40, seed=2, drill=0.5)
    problems = [r for r in mixed if r.meta["style"] != "drill"]
    drills = [r for r in mixed if r.meta["style"] == "drill"]
    assert [r.to_dict() for r in problems] == [r.to_dict() for r in plain]
    assert len(drills) == 20 and len({r.id for r in mixed}) == 60
    assert mixed[1].meta["style"] == "drill" and mixed[-1].meta["style"] != "drill"  # spread, not appended
    assert [r.to_dict() for r in synth_records(40, seed=2, drill=0.5)] == [r.to_dict() for r in mixed]
    eq = re.compile(r"^So (\d+) ([-+*]) (\d+) = (\d+)\.$", re.M)
    for r in drills:
        thoughts = split_thoughts(r.thinking)
        assert len(thoughts) == r.meta["steps"] == len(r.meta["thought_kinds"])
        results = []
        for t in thoughts:
            a, o, b, c = eq.search(t).groups()
            assert int(c) == _recompute({"start": int(a), "ops": [[o, int(b)]]}) >= 0
            assert (o != "*" or int(b) <= 3) and re.search(r"^Ones: ", t, re.M)
            results.append(int(c))
        assert r.meta["result"] == results[-1] and r.answer.endswith(f"\\boxed{{{results[-1]}}}.")


def test_r1_step_leads_quote_the_question_sentence():
    """A step's lead is the question's sentence for that operation, word for word, and that
    sentence has the step's own adverb right before the verb (one adverb per step index)."""
    from thinkc.data.synth_r1 import ADVERBS

    for r in synth_records(100, seed=4, min_steps=3, max_steps=6):
        leads = re.findall(r"^(?:Step|Now step|Okay, step) (\d+): (.+)$", r.thinking, re.M)
        assert [int(k) for k, _ in leads] == list(range(1, r.meta["steps"] + 1))
        for (k, quote), (op, b) in zip(leads, r.meta["ops"]):
            assert quote in r.question and quote.split()[1] == ADVERBS[int(k) - 1]
            assert (str(b) in quote) if op != "*" else ("doubles" in quote or "triples" in quote or str(b) in quote)
