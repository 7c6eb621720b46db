"""Thought segmentation: blank-line thoughts and fixed-size token steps."""
from hypothesis import given, strategies as st

import pytest

from thinkc.data.segment import split_thoughts, token_steps


def test_split_on_blank_lines():
    text = "First, 2 + 3 = 5.\n\nWait, let me check.\nYes.\n\n\n  \nSo 5.\n"
    assert split_thoughts(text) == ["First, 2 + 3 = 5.", "Wait, let me check.\nYes.", "So 5."]
    assert split_thoughts("") == [] and split_thoughts("\n\n \n") == []
    assert split_thoughts("one line") == ["one line"]


@given(st.lists(st.text(alphabet="ab \n", max_size=12), max_size=8))
def test_thoughts_are_never_empty_and_keep_the_text(parts):
    text = "\n\n".join(parts)
    thoughts = split_thoughts(text)
    assert all(t.strip() for t in thoughts)
    assert "".join(thoughts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")


@given(st.lists(st.integers(0, 99), max_size=50), st.integers(1, 9))
def test_token_steps_cover_ids_in_order(ids, step):
    chunks = token_steps(ids, step)
    assert [i for c in chunks for i in c] == ids
    assert all(len(c) == step for c in chunks[:-1]) and all(1 <= len(c) <= step for c in chunks)


def test_token_steps_rejects_non_positive_step():
    with pytest.raises(ValueError):
        token_steps([1, 2], 0)
