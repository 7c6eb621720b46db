"""A checkpoint trained in several parts ships one train log: the parts in order, rows tagged."""
import json

import pytest

from thinkc.train import recipes


def _run(tmp_path, name, losses):
    out = tmp_path / name
    (out / "final").mkdir(parents=True)
    (out / "final" / "config.json").write_text("{}")
    rows = [{"step": 10 * (i + 1), "loss": x} for i, x in enumerate(losses)]
    (out / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


@pytest.fixture
def runs(tmp_path, monkeypatch):
    outs = {"part_1": _run(tmp_path, "p1", [6.0, 1.0]), "part_2": _run(tmp_path, "p2", [0.9, 0.5])}
    monkeypatch.setattr(recipes, "_output", lambda r: outs.get(r, tmp_path / "missing"))
    monkeypatch.setattr(recipes, "CHECKPOINTS", tmp_path / "checkpoints")
    return outs


def test_ship_joins_the_parts_logs_in_order(runs):
    dest = recipes.ship("part_2", "tiny-x", ["part_1"])
    rows = [json.loads(line) for line in (dest / "train_log.jsonl").read_text().splitlines()]
    assert [(r["recipe"], r["loss"]) for r in rows] == [("part_1", 6.0), ("part_1", 1.0), ("part_2", 0.9),
                                                        ("part_2", 0.5)]
    assert (dest / "config.json").is_file() and not list(dest.parent.glob(".*.tmp"))


def test_ship_refuses_a_part_without_a_log_and_keeps_the_shipped_one(runs):
    first = recipes.ship("part_2", "tiny-x")
    before = (first / "train_log.jsonl").read_text()
    with pytest.raises(FileNotFoundError, match="no train log"):
        recipes.ship("part_2", "tiny-x", ["nowhere"])
    assert (first / "train_log.jsonl").read_text() == before
