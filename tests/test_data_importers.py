"""Importers on hand-made files in the public layouts; exporters for trainers."""
import json
from pathlib import Path

import pytest

from thinkc.data.exporters import export_alpaca, export_messages
from thinkc.data.importers import detect_format, import_file, split_think
from thinkc.data.schema import Record
from thinkc.errors import ThinkcError

DATA = Path(__file__).parent / "data"


def test_stratos_conversations():
    recs, skipped = import_file(DATA / "stratos.jsonl", "stratos")
    assert skipped == 0 and len(recs) == 3
    r = recs[0]
    assert r.id == "stratos-1" and r.question.startswith("Return your final response")
    assert r.thinking.startswith("Okay, so I need") and r.thinking.endswith("Yes, 11.")
    assert "<|" not in r.thinking + r.answer and r.answer.endswith("\\boxed{11}")
    assert r.system.startswith("Your role as an assistant")
    assert recs[1].answer.endswith("divisors.")  # ShareGPT human/gpt turn names
    assert len(recs[0].thinking.split("\n\n")) == 4


def test_openr1_picks_the_verified_generation():
    recs, _ = import_file(DATA / "openr1.jsonl", "openr1")
    assert [r.id[-1] for r in recs] == ["1", "2", "3"]
    first = recs[0]
    assert "55" in first.thinking and first.answer == "The sum is $\\boxed{55}$."  # generation 2 was verified
    assert first.meta["reference_answer"] == "55" and first.meta["source"] == "olympiads"
    assert recs[2].thinking.startswith("100 / 4 = 25.") and recs[2].answer == "\\boxed{25}"  # messages only, no <think>


def test_chat_messages():
    recs, _ = import_file(DATA / "messages.jsonl", "messages")
    assert [r.id for r in recs] == ["chat-1", "messages-2"]
    assert recs[0].system == "You are a careful math tutor." and recs[0].question == "What is 6 * 7?"
    assert recs[0].thinking == "6 * 7 = 42.\n\nHmm, 7 * 6 is also 42. Good." and recs[0].answer == "\\boxed{42}"
    assert recs[1].system is None


@pytest.mark.parametrize("name, fmt", [("stratos", "stratos"), ("openr1", "openr1"), ("messages", "messages")])
def test_auto_detects_each_layout(name, fmt):
    first = json.loads((DATA / f"{name}.jsonl").read_text().splitlines()[0])
    assert detect_format(first) == fmt
    assert import_file(DATA / f"{name}.jsonl")[0] == import_file(DATA / f"{name}.jsonl", fmt)[0]


def test_json_array_input(tmp_path):
    rows = [json.loads(line) for line in (DATA / "messages.jsonl").read_text().splitlines()]
    (tmp_path / "m.json").write_text(json.dumps(rows, indent=1))
    recs, _ = import_file(tmp_path / "m.json")
    assert [r.thinking for r in recs] == [r.thinking for r in import_file(DATA / "messages.jsonl")[0]]


def test_bad_rows_name_their_line_and_can_be_skipped(tmp_path):
    lines = (DATA / "stratos.jsonl").read_text().splitlines()
    broken = json.loads(lines[1])
    broken["conversations"][1]["value"] = "no markers here"
    p = tmp_path / "s.jsonl"
    p.write_text("\n".join([lines[0], json.dumps(broken), "{truncated", lines[2]]) + "\n")
    with pytest.raises(ThinkcError, match=rf"{p}:2: assistant turn lacks <\|begin_of_thought\|>"):
        import_file(p)
    recs, skipped = import_file(p, skip_invalid=True)
    assert skipped == 2 and [r.question[-8:] for r in recs] == ["4 \\cdot 2$?"[-8:], "$2x = 10$."[-8:]]


def test_unknown_layout_and_format_errors(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    with pytest.raises(ThinkcError, match=r"x.jsonl:1: unknown layout .*pass --format"):
        import_file(p)
    with pytest.raises(ThinkcError, match="unknown format 'sharegpt'"):
        import_file(p, "sharegpt")


def test_split_think_variants():
    assert split_think("<think>\na\n\nb\n</think>\n\nans") == ("a\n\nb", "ans")
    assert split_think("a</think>ans") == ("a", "ans")
    with pytest.raises(ValueError, match="no <think>"):
        split_think("just an answer")


RECS = [Record("a", "What is 2 + 2?", "2 + 2 = 4.\n\nHmm, yes.", "\\boxed{4}", system="Be brief.",
               meta={"cts": {"ratio": 0.7}}),
        Record("b", "What is 3 * 3?", "3 * 3 = 9.", "\\boxed{9}")]


def test_export_messages_round_trips_through_the_importer(tmp_path):
    export_messages(RECS, tmp_path / "m.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert rows[0]["messages"][2]["content"] == "<think>\n2 + 2 = 4.\n\nHmm, yes.\n</think>\n\n\\boxed{4}"
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    assert [m["role"] for m in rows[1]["messages"]] == ["user", "assistant"]
    back, _ = import_file(tmp_path / "m.jsonl", "messages")
    assert [(r.id, r.question, r.thinking, r.answer, r.system) for r in back] == \
        [(r.id, r.question, r.thinking, r.answer, r.system) for r in RECS]


def test_export_alpaca_and_ratio_tag(tmp_path):
    export_alpaca(RECS, tmp_path / "a.json", ratio_tag=True)
    rows = json.loads((tmp_path / "a.json").read_text())
    assert rows[0] == {"instruction": "What is 2 + 2?\n<ratio>0.7</ratio>", "input": "",
                       "output": "<think>\n2 + 2 = 4.\n\nHmm, yes.\n</think>\n\n\\boxed{4}", "system": "Be brief.",
                       "id": "a", "meta": {"cts": {"ratio": 0.7}}}
    assert rows[1]["instruction"].endswith("\n<ratio>1</ratio>") and "system" not in rows[1]
    export_messages(RECS, tmp_path / "m.jsonl", ratio_tag=True)
    first = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert first["messages"][1]["content"] == "What is 2 + 2?\n<ratio>0.7</ratio>"
