"""Admission headroom from the rows' measured net growth (thinkc.infer.headroom)."""
from thinkc.infer.headroom import Headroom


def _feed(room: Headroom, steps: int, rows: int, taken_per_step, freed_per_step) -> None:
    for t in range(steps):
        room.took(taken_per_step(t))
        room.step(freed_per_step(t), rows)


def test_one_page_per_row_until_measured():
    room = Headroom(n_pages=1000, page_size=16)
    assert room.pages(0) == 0
    assert room.pages(10) == 10 + 10  # watermark (1 % of 1,000 pages) + a page per row


def test_rows_that_only_grow_keep_a_page_each():
    room = Headroom(n_pages=1000, page_size=16)
    # 32 rows, each takes a page every 16 steps (staggered: 2 pages per step), nothing is freed
    _feed(room, 400, 32, lambda t: 2, lambda t: 0)
    assert room.pages(32) == 10 + 32


def test_rows_that_give_pages_back_hold_back_less():
    room = Headroom(n_pages=1000, page_size=16)
    # 32 rows take 2 pages per step and compaction returns 3 pages every 2 steps: net 0.5 pages/step
    _feed(room, 2000, 32, lambda t: 2, lambda t: 3 if t % 2 else 0)
    assert 10 + 7 <= room.pages(32) <= 10 + 9  # 0.5 / 32 per row-step x 16 steps x 32 rows = 8
    # rows that stop growing (a fixed budget: everything taken is freed) keep the watermark alone
    flat = Headroom(n_pages=1000, page_size=16)
    _feed(flat, 2000, 32, lambda t: 2, lambda t: 2)
    assert flat.pages(32) == 10


def test_the_average_follows_a_change_of_regime():
    room = Headroom(n_pages=1000, page_size=16)
    _feed(room, 2000, 32, lambda t: 2, lambda t: 2)
    assert room.pages(32) == 10
    _feed(room, 2000, 32, lambda t: 2, lambda t: 0)  # the rows start growing again
    assert room.pages(32) == 10 + 32
